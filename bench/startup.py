"""Row 2, engine start: `forgeyard validate` of a 50-job pipeline and `forgeyard --help` against `python -c pass`."""

from __future__ import annotations

import sys

from bench.context import Context
from bench.engine import Home, write_pipeline
from bench.measure import Stats, alternate, run_process
from bench.report import Row

JOBS = 50
EXTRA_TARGET_MS = 150.0


def fifty_jobs() -> dict:
    """50 jobs in chains of five: expressions, env, `if:`, outputs, a matrix, and built-in steps in some."""
    jobs: dict = {}
    for n in range(1, JOBS + 1):
        job: dict = {"steps": [
            {"id": "say", "name": f"say {n}", "run": f'echo "job {n} for ${{{{ inputs.who }}}}"\n'
                                                     f'echo "n={n}" >> "$FORGEYARD_OUTPUT"'},
            {"if": "${{ success() && inputs.loud }}", "env": {"N": str(n)}, "run": "echo \"loud $N\""},
        ], "outputs": {"n": "${{ steps.say.outputs.n }}"}}
        if n % 5 != 1:
            job["needs"] = [f"job{n - 1:02d}"]
        if n % 10 == 0:
            job["strategy"] = {"matrix": {"channel": ["stable", "nightly"]}}
        if n % 25 == 0:
            job["steps"][1:] = [{"uses": "clone_repo", "with": {"repository": "official", "depth": 1}},
                                {"uses": "create_zip", "with": {"level": 6}}]
        jobs[f"job{n:02d}"] = job
    return jobs


def run(ctx: Context) -> list[Row]:
    folder = ctx.scratch("startup")
    pipeline = write_pipeline(folder / "fifty-jobs.yml", "fifty jobs", fifty_jobs(), on=["manual", "api"],
                              inputs={"who": {"type": "string", "default": "world"},
                                      "loud": {"type": "boolean", "default": False}})
    home = Home(folder / "home")
    home.run("validate", str(pipeline))  # fails here if the file is invalid
    contenders = {
        "validate": lambda: home.run("validate", str(pipeline)).seconds,
        "help": lambda: home.run("--help").seconds,
        "python": lambda: run_process([sys.executable, "-c", "pass"]).seconds,
    }
    reps = ctx.reps(20, 3)
    ctx.log(f"row 2: 3 commands × {reps} rounds")
    times = alternate(contenders, reps, warmup=1)
    python = Stats.of(times["python"])
    validate, help_ = Stats.of(times["validate"]), Stats.of(times["help"])
    extra = Stats.of([(v - p) * 1000 for v, p in zip(times["validate"], times["python"], strict=True)], "ms")
    help_extra = Stats.of([(h - p) * 1000 for h, p in zip(times["help"], times["python"], strict=True)], "ms")
    return [
        Row("2a", f"`forgeyard validate` of a {JOBS}-job pipeline vs `python -c pass`", validate, python,
            "python -c pass"),
        Row("2b", "validate − bare interpreter start, paired by round", extra,
            target=f"≤ {EXTRA_TARGET_MS:g} ms more", met=extra.median <= EXTRA_TARGET_MS),
        Row("2c", "`forgeyard --help` vs `python -c pass`", help_, python, "python -c pass",
            notes=[f"--help costs {help_extra.median:.0f} ms more than the bare interpreter (median, paired)"]),
    ]
