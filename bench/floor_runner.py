"""The floor runner of row 1: a PyYAML parse and one `bash -e -c STEP` per step, nothing more; run as a script."""

import subprocess
import sys

import yaml


def main(path: str) -> int:
    with open(path) as file:
        spec = yaml.safe_load(file)
    for job in spec["jobs"].values():
        for step in job["steps"]:
            print(f"== {step['run']}", flush=True)
            if subprocess.run(["bash", "-e", "-c", step["run"]]).returncode != 0:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
