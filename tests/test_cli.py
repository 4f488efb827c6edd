"""The `forgeyard` command as a user meets it: real subprocesses, exit codes, live output, Ctrl-C, records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from runner import processgroup

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "pipelines").glob("*.yml"))
# The pipelines that need nothing but a shell; the build pipelines run in tests/test_build_pipelines.py.
SHELL_EXAMPLES = ["hello.yml", "matrix.yml", "needs-outputs.yml"]


@pytest.fixture(params=["sqlite", "postgresql"])
def home(request, tmp_path, monkeypatch):
    """A FORGEYARD_HOME for the command; its records go to SQLite in it, or to a fresh PostgreSQL database."""
    if request.param == "postgresql":
        from tests.services.postgres import fresh_database

        monkeypatch.setenv("FORGEYARD_DATABASE_URL", fresh_database(request.getfixturevalue("postgres_url")))
    else:
        monkeypatch.delenv("FORGEYARD_DATABASE_URL", raising=False)
    return tmp_path / "home"


def forgeyard(home: Path, *args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner", *args], capture_output=True, text=True,
                          env=_env(home, env), cwd=kwargs.pop("cwd", ROOT), timeout=120, **kwargs)


def _env(home: Path, extra: dict | None = None) -> dict:
    # Only the database choice of the `home` fixture passes; no other FORGEYARD_* of the test run leaks in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORGEYARD_") or k == "FORGEYARD_DATABASE_URL"}
    env.update({"FORGEYARD_HOME": str(home), "FORGEYARD_KILL_GRACE": "1"}, **(extra or {}))
    return env


def write(folder: Path, text: str, name: str = "pipeline.yml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def test_examples_are_valid():
    result = forgeyard(Path("/nonexistent"), "validate", *map(str, EXAMPLES))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": ok") == len(EXAMPLES)


@pytest.mark.parametrize("example", SHELL_EXAMPLES)
def test_examples_run(example, home):
    result = forgeyard(home, "run", f"pipelines/{example}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "completed" in result.stdout


def test_hello_masks_the_secret_and_greets(home):
    result = forgeyard(home, "run", "pipelines/hello.yml", "--input", "who=world", "--secret", "TOKEN=s3cr3t-value")
    assert result.returncode == 0, result.stderr
    assert "Hello, world!" in result.stdout
    assert "The token is *** (masked in every log)" in result.stdout
    assert "said 'Hello, world'" in result.stdout
    assert "s3cr3t-value" not in result.stdout + result.stderr
    logs = forgeyard(home, "runs", "logs", "1")
    assert "The token is ***" in logs.stdout and "s3cr3t-value" not in logs.stdout
    assert logs.stdout.splitlines()[0].startswith("[20") and "Z] " in logs.stdout.splitlines()[0]


def test_secrets_from_environment_and_file(home, tmp_path):
    pipeline = write(tmp_path, """
        jobs:
          a:
            steps:
              - env: {A: "${{ secrets.FROM_ENV }}", B: "${{ secrets.FROM_FILE }}", C: "${{ secrets.KEY }}"}
                run: |
                  echo "a=$A b=$B"
                  echo "$C"
    """)
    secrets = tmp_path / "secrets.env"
    secrets.write_text("FROM_FILE=file-secret-value\nKEY<<EOF\nfirst-key-line-xyz\nsecond-key-line-xyz\nEOF\n")
    result = forgeyard(home, "run", str(pipeline), "--secrets-file", str(secrets),
                       env={"FORGEYARD_SECRET_FROM_ENV": "env-secret-value"})
    assert result.returncode == 0, result.stderr
    assert "a=*** b=***" in result.stdout
    for value in ("env-secret-value", "file-secret-value", "first-key-line-xyz", "second-key-line-xyz"):
        assert value not in result.stdout


def test_exit_codes(home, tmp_path):
    failing = write(tmp_path, "jobs: {a: {steps: [{run: 'exit 5'}]}}", "failing.yml")
    assert forgeyard(home, "run", str(failing)).returncode == 1
    invalid = write(tmp_path, "jobs:\n  a:\n    steps:\n      - runs: echo\n", "invalid.yml")
    result = forgeyard(home, "run", str(invalid))
    assert result.returncode == 2
    assert f"{invalid}:4:9: " in result.stderr
    assert forgeyard(home, "run", str(tmp_path / "missing.yml")).returncode == 2
    assert forgeyard(home, "run", "pipelines/hello.yml", "--input", "nobody=1").returncode == 2
    assert forgeyard(home, "run", "pipelines/hello.yml", "--input", "no-equals-sign").returncode == 2
    assert forgeyard(home, "run", "pipelines/hello.yml", "--job", "nope").returncode == 2
    assert forgeyard(home, "frobnicate").returncode == 2
    listed = forgeyard(home, "runs", "list", "--json")
    assert [run["status"] for run in json.loads(listed.stdout)] == ["failed"], "usage errors record no run"


def test_malformed_secret_is_not_echoed(home):
    result = forgeyard(home, "run", "pipelines/hello.yml", "--secret", "bare-secret-value")
    assert result.returncode == 2
    assert "bare-secret-value" not in result.stderr
    assert "--secret takes NAME=VALUE" in result.stderr


def test_validate_reports_every_error_with_position(tmp_path):
    bad = write(tmp_path, """
        jobs:
          a:
            needs: ghost
            steps:
              - run: echo ${{ inputs.nope }}
    """)
    result = forgeyard(Path("/nonexistent"), "validate", str(bad))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) >= 2
    assert all(line.startswith(f"{bad}:") for line in lines)
    assert any(":4:" in line and "ghost" in line for line in lines)
    assert any(":6:" in line and "nope" in line for line in lines)


def test_json_result_and_runs_commands(home, tmp_path):
    pipeline = write(tmp_path, """
        name: json demo
        jobs:
          a:
            steps:
              - id: out
                run: echo "answer=42" >> "$FORGEYARD_OUTPUT"
          b:
            needs: a
            steps:
              - run: exit 2
                continue-on-error: true
    """)
    result = forgeyard(home, "run", str(pipeline), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["status"] == "completed"
    assert data["jobs"][0]["steps"][0]["outputs"] == {"answer": "42"}
    assert data["jobs"][1]["steps"][0]["exit_code"] == 2
    assert "Executing step" in result.stderr

    show = json.loads(forgeyard(home, "runs", "show", str(data["run_id"]), "--json").stdout)
    assert show["status"] == "completed" and show["pipeline"] == "json demo"
    assert [job["id"] for job in show["jobs"]] == ["a", "b"]
    table = forgeyard(home, "runs", "show", str(data["run_id"])).stdout
    assert "exit" in table.lower() and "json demo" in table
    assert forgeyard(home, "runs", "show", "999").returncode == 2
    assert json.loads(forgeyard(home, "runs", "list", "--status", "completed", "--json").stdout)[0]["id"] == \
        data["run_id"]


def test_only_job_runs_it_and_its_needs(home, tmp_path):
    pipeline = write(tmp_path, """
        jobs:
          base: {steps: [{run: echo base-ran}]}
          app: {needs: base, steps: [{run: echo app-ran}]}
          other: {steps: [{run: echo other-ran}]}
    """)
    result = forgeyard(home, "run", str(pipeline), "--job", "app")
    assert result.returncode == 0
    assert "base-ran" in result.stdout and "app-ran" in result.stdout and "other-ran" not in result.stdout


@pytest.mark.parametrize("command", [[], ["run"], ["validate"], ["runs"]])
def test_help_says_what_and_shows_an_example(command):
    result = forgeyard(Path("/nonexistent"), *command, "--help")
    assert result.returncode == 0
    assert "example" in result.stdout


def test_ctrl_c_cancels_the_run_and_leaves_no_process(home, tmp_path):
    pipeline = write(tmp_path, """
        jobs:
          stubborn:
            steps:
              - run: |
                  trap '' TERM
                  sleep 300 &
                  echo "$!" > "$FORGEYARD_WORKSPACE/child.pid"
                  echo "$$" > "$FORGEYARD_WORKSPACE/shell.pid"
                  echo ready
                  wait
              - name: second step
                run: echo "second step ran"
    """)
    workdir = tmp_path / "work"
    process = subprocess.Popen([sys.executable, "-m", "runner", "run", str(pipeline), "--workdir", str(workdir)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=_env(home), cwd=ROOT)
    output = []
    for line in process.stdout:
        output.append(line)
        if line.strip() == "ready":
            break
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=30)
    output.append(rest)
    assert process.returncode == 130, "".join(output)
    assert time.monotonic() - started < 10
    assert "second step ran" not in "".join(output)
    for name in ("child.pid", "shell.pid"):
        pid = int((workdir / "stubborn" / name).read_text())
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    runs = json.loads(forgeyard(home, "runs", "list", "--json").stdout)
    assert runs[0]["status"] == "cancelled"


# --- start-up: a file whose verdict is cached (runner.verdicts) loads nothing its command does not use ----------

# Each costs tens of milliseconds at every start: the validator (jsonschema, PyYAML, the linter), the image, docker,
# AWS and crypto libraries of some built-in steps, the API server, the cron parser.
HEAVY = ("jsonschema", "yaml", "PIL", "docker", "starlette", "boto3", "cryptography", "croniter", "psycopg2",
         "runner.lint", "runner.steps.")
REPORTING_MODULES = ("import sys; from runner.cli import main; code = main(sys.argv[1:]); "
                     "print('modules:', *sorted(sys.modules), file=sys.stderr); sys.exit(code)")


def _modules(home: Path, *args: str) -> set[str]:
    result = subprocess.run([sys.executable, "-c", REPORTING_MODULES, *args], capture_output=True, text=True,
                            env=_env(home), cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    return set(next(line for line in result.stderr.splitlines() if line.startswith("modules: ")).split()[1:])


def _heavy(modules: set[str]) -> set[str]:
    return {name for name in modules if name.split(".")[0] in HEAVY or name.startswith(HEAVY)}


def test_a_known_file_is_validated_and_run_without_the_validator_or_the_steps_libraries(tmp_path, monkeypatch):
    monkeypatch.delenv("FORGEYARD_DATABASE_URL", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    builds = write(tmp_path, """
        on: {schedule: [{cron: "0 3 * * *"}]}
        jobs:
          package:
            steps:
              - uses: clone_repo
                with: {repository: official}
              - uses: create_zip
              - uses: build_image
              - uses: push_registry
                with: {registry: registry.example.com, repository: acme/webui}
    """, "builds.yml")
    script = write(tmp_path, "jobs: {a: {steps: [{run: echo one}, {run: echo two}]}}\n", "script.yml")
    first = _modules(home, "validate", str(builds), str(script))
    assert "jsonschema" in first and not first & {"PIL", "docker", "starlette", "boto3"}, "no step is imported to lint"
    assert _heavy(_modules(home, "validate", str(builds), str(script))) == set()
    run = _modules(home, "run", str(script))
    assert _heavy(run) == set() and "peewee" in run


@pytest.mark.reliability
def test_a_killed_run_takes_its_step_processes_along(tmp_path, monkeypatch):
    """SIGKILL leaves the run no cleanup: the watchdog its job's steps share kills the step group still running."""
    monkeypatch.delenv("FORGEYARD_DATABASE_URL", raising=False)
    pids = tmp_path / "pids"
    pipeline = write(tmp_path, f"""
        jobs:
          doomed:
            steps:
              - run: echo "a step the same watchdog guarded and released"
              - run: |
                  trap '' TERM
                  sleep 300 &
                  echo "$$ $!" > {pids}.tmp; mv {pids}.tmp {pids}
                  wait
    """)
    process = subprocess.Popen([sys.executable, "-m", "runner", "run", str(pipeline)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=_env(tmp_path / "home"), cwd=ROOT,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not pids.exists():
            assert process.poll() is None and time.monotonic() < deadline, "the step did not start"
            time.sleep(0.02)
    finally:
        process.kill()
        process.wait()
    shell, child = map(int, pids.read_text().split())
    deadline = time.monotonic() + 5
    while processgroup.group_alive(shell):
        assert time.monotonic() < deadline, f"the killed run's step outlived it (sleep {child} in group {shell})"
        time.sleep(0.02)
