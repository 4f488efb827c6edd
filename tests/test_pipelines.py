"""Pipelines as data: each tests/pipelines/<feature>.yml must end as its .expected.json says."""

from __future__ import annotations

import base64
import json
import urllib.parse
from pathlib import Path

import pytest

from runner import queries
from runner.runs import RunOptions, create_run, execute_run
from runner.spec import load_spec_file

PIPELINES = Path(__file__).parent / "pipelines"
CASES = sorted(p.stem for p in PIPELINES.glob("*.yml"))


@pytest.mark.parametrize("case", CASES)
def test_pipeline_ends_as_expected(case, db, tmp_path, capsys):
    expected = json.loads((PIPELINES / f"{case}.expected.json").read_text())
    spec = load_spec_file(PIPELINES / f"{case}.yml")
    run = create_run(spec, expected.get("inputs", {}), trigger="cli")
    workspace = tmp_path / "workspace"
    outcome = execute_run(run, RunOptions(secrets=expected.get("secrets", {}), workspace_root=workspace), spec)

    record = queries.get_run(run.id)
    assert (outcome.status, record.status) == (expected["status"], expected["status"])
    if "error" in expected:
        assert record.error == expected["error"]
    jobs = {job.job_id: job for job in queries.job_results(run.id)}
    if "job_count" in expected:
        assert len(jobs) == expected["job_count"], sorted(jobs)
    steps = queries.step_results(run.id)
    for job_id, want in expected["jobs"].items():
        assert job_id in jobs, f"no job {job_id!r} among {sorted(jobs)}"
        job = jobs[job_id]
        assert job.status == want["status"], job_id
        if "outputs" in want:
            assert json.loads(job.outputs_json) == want["outputs"]
        job_steps = sorted((s for s in steps if s.job_id == job_id), key=lambda s: s.step_index)
        for index, want_step in enumerate(want.get("steps", [])):
            assert _step_fields(job_steps[index], want_step) == want_step, f"{job_id} step {index}"

    log = "\n".join(line.text for line in queries.iter_log_lines(run.id))
    seqs = [line.seq for line in queries.iter_log_lines(run.id)]
    assert seqs == list(range(1, len(seqs) + 1)), "log lines are numbered without gaps"
    for text in expected.get("log_contains", []):
        assert text in log
    for text in expected.get("log_excludes", []):
        assert text not in log
    for name in expected.get("absent_files", []):
        assert not (workspace / name).exists(), name
    for name in expected.get("dead_pid_files", []):
        pid = int((workspace / name).read_text())
        assert not _alive(pid), f"process {pid} outlived its step"
    if expected.get("log_excludes_secrets"):
        stored = [log, *(s.outputs_json for s in steps), *(j.outputs_json for j in jobs.values())]
        for secret in expected["secrets"].values():
            for form in _leak_forms(secret):
                assert all(form not in text for text in stored), f"secret form {form!r} leaked"


def _step_fields(step, want: dict) -> dict:
    values = {"status": step.status, "exit_code": step.exit_code, "outcome": step.outcome,
              "attempts": step.attempts, "error": step.error, "outputs": json.loads(step.outputs_json or "{}")}
    return {key: values[key] for key in want}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _leak_forms(secret: str) -> list[str]:
    forms = [secret, urllib.parse.quote(secret, safe=""), base64.b64encode(secret.encode()).decode(),
             json.dumps(secret)[1:-1]]
    forms += [line.strip() for line in secret.splitlines() if len(line.strip()) >= 4]
    return forms


def test_ready_set_starts_a_job_when_its_own_needs_are_done(db, tmp_path):
    """`after-quick` must not wait for `slow`, which is independent of it (no layer-by-layer scheduling)."""
    spec = load_spec_file(_write(tmp_path, """
        jobs:
          quick: {steps: [{run: "true"}]}
          slow: {steps: [{run: "sleep 1.5"}]}
          after-quick: {needs: quick, steps: [{run: "true"}]}
    """))
    run = create_run(spec, {}, trigger="cli")
    execute_run(run, RunOptions(workspace_root=tmp_path / "ws", max_parallel_jobs=4), spec)
    jobs = {job.job_id: job for job in queries.job_results(run.id)}
    assert jobs["after-quick"].completed_at < jobs["slow"].completed_at
    assert jobs["after-quick"].started_at >= jobs["quick"].completed_at


def test_workspace_is_removed_after_the_run_unless_kept(db, tmp_path, monkeypatch):
    monkeypatch.setenv("FORGEYARD_WORKSPACE_DIR", str(tmp_path / "workspaces"))
    spec = load_spec_file(_write(tmp_path, "jobs: {a: {steps: [{run: 'touch made-here'}]}}"))
    removed = create_run(spec, {}, trigger="cli")
    execute_run(removed, RunOptions(), spec)
    assert not (tmp_path / "workspaces" / f"run-{removed.id}").exists()
    kept = create_run(spec, {}, trigger="cli")
    execute_run(kept, RunOptions(keep_workspace=True), spec)
    assert (tmp_path / "workspaces" / f"run-{kept.id}" / "a" / "made-here").exists()
    assert not (tmp_path / "workspaces" / f"run-{kept.id}" / ".forgeyard").exists()


def _write(folder: Path, text: str) -> Path:
    import textwrap

    path = folder / "pipeline.yml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(autouse=True)
def _server_secret_in_env(monkeypatch):
    # The env-files pipeline checks that the server's own variables never reach a step.
    monkeypatch.setenv("FORGEYARD_SECRET_KEY", "server-side-key-never-for-steps")


def test_a_job_cancelled_before_its_first_step_is_cancelled_not_successful(db, tmp_path):
    from runner import process
    from runner.events import EventHub
    from runner.job import JobRunner, RunInfo
    from runner.masking import SecretMasker
    from runner.plan import build_plan

    spec = load_spec_file(_write(tmp_path, "jobs: {a: {steps: [{run: 'echo never'}]}}"))
    plan = build_plan(spec.data, {}, name="p")
    token = process.CancelToken()
    token.cancel("fail-fast")
    info = RunInfo(run_id=None, trigger="cli", workspace_root=tmp_path, secrets={}, plan_env={}, inputs={})
    report = JobRunner(plan.jobs[0], info, EventHub([], SecretMasker()), token, process.CancelToken(), {},
                       tmp_path / "a", tmp_path / "scratch").run()
    assert report.status == "cancelled"
    assert [step.status for step in report.steps] == ["skipped"]


def test_a_cancel_landing_between_a_steps_condition_and_its_process_still_stops_it(db, tmp_path, monkeypatch):
    """The race behind a flaky API cancel: the step was due, then the cancel came before its process started."""
    import time

    from runner import process
    from runner.events import EventHub
    from runner.job import JobRunner, RunInfo
    from runner.masking import SecretMasker
    from runner.plan import build_plan

    spec = load_spec_file(_write(tmp_path, "jobs: {a: {steps: [{run: 'sleep 30'}]}}"))
    plan = build_plan(spec.data, {}, name="p")
    token = process.CancelToken()
    original = JobRunner._step_timeout

    def cancel_then_time(self, step_plan):  # runs after the condition, before the process is spawned
        token.cancel("api")
        return original(self, step_plan)

    monkeypatch.setattr(JobRunner, "_step_timeout", cancel_then_time)
    info = RunInfo(run_id=None, trigger="cli", workspace_root=tmp_path, secrets={}, plan_env={}, inputs={})
    (tmp_path / "a").mkdir()
    (tmp_path / "scratch").mkdir()
    started = time.monotonic()
    report = JobRunner(plan.jobs[0], info, EventHub([], SecretMasker()), token, process.CancelToken(), {},
                       tmp_path / "a", tmp_path / "scratch").run()
    assert report.steps[0].status == "cancelled" and report.status == "cancelled"
    assert time.monotonic() - started < 10
