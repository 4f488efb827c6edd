"""Workers at scale: real `forgeyard worker` processes on PostgreSQL and SQLite, killed, stalled, cancelled, listed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn

from api.app import create_app
from runner import processgroup, queries, queue
from runner.models import Run
from runner.spec import load_spec
from runner.tokens import create_token
from tests.services.workers import (
    HEARTBEAT_SECONDS,
    LEASE_SECONDS,
    REPO_ROOT,
    TERMINAL,
    all_done,
    assert_never_twice_at_once,
    connect,
    kill_while_running,
    log_text,
    submit,
    traced_pipeline,
    wait_for,
)

# -- thirty runs, a worker killed -------------------------------------------------------------------------------

@pytest.mark.reliability
@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_thirty_runs_survive_a_worker_killed_mid_run(backend: str, request, fleet, tmp_path: Path) -> None:
    # PostgreSQL: three workers share the queue. SQLite: one worker, killed and started again.
    url = request.getfixturevalue("pg") if backend == "postgresql" else connect(f"sqlite:///{tmp_path / 'fy.db'}")
    workers = [fleet(url) for _ in range(3 if backend == "postgresql" else 1)]
    trace = tmp_path / "trace.log"
    trace.touch()
    run_ids = submit(traced_pipeline(trace, 0.3, 0.3), 30)
    started = time.monotonic()

    victim = workers[0]
    held = kill_while_running(victim)
    if backend == "sqlite":
        workers.append(fleet(url))
    took = wait_for(lambda: all_done(run_ids), "every run to end")
    print(f"\n{backend}: 30 runs on {len(workers)} worker process(es), {victim.worker_id} killed holding runs "
          f"{held}; all ended {took:.1f} s after the kill, {time.monotonic() - started:.1f} s after queueing")

    runs = {run.id: run for run in Run.select().where(Run.id.in_(run_ids))}
    assert len(runs) == 30 and Run.select().count() == 30, "a run was lost or made up"
    lost_line = f"worker {victim.worker_id} lost; attempt 2 of 2"
    taken_back = [run_id for run_id in run_ids if lost_line in log_text(run_id)]
    for run in runs.values():
        exhausted = "no attempts left" in log_text(run.id)
        assert run.status == "completed" or (run.status == "failed" and run.error == "worker_lost" and exhausted), \
            f"run {run.id} ended {run.status} ({run.error}):\n{log_text(run.id)}"
        assert run.attempt == (2 if run.id in taken_back else 1), f"run {run.id} attempt {run.attempt}"
        assert run.worker_id != victim.worker_id or run.id not in taken_back
    assert sorted(taken_back) == held, "the runs taken back are not those the killed worker held"

    intervals = assert_never_twice_at_once(trace)
    for run_id in run_ids:
        executions = len(intervals[run_id])
        # Two steps per execution; a taken-back run may have run part of its steps on the killed worker first.
        expected = range(2, 5) if run_id in taken_back else range(2, 3)
        assert executions in expected, (run_id, intervals[run_id])

    listed = subprocess.run([sys.executable, "-m", "runner", "workers", "--json"], cwd=REPO_ROOT,
                            env={**os.environ, "FORGEYARD_DATABASE_URL": url,
                                 "FORGEYARD_LEASE_SECONDS": str(LEASE_SECONDS)},
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    shown = {worker["worker_id"]: worker for worker in json.loads(listed.stdout)}
    assert set(shown) == {worker.worker_id for worker in workers}
    assert shown[victim.worker_id]["alive"] is False and shown[victim.worker_id]["pid"] == victim.process.pid
    assert all(shown[worker.worker_id]["alive"] for worker in workers[1:])
    assert all(worker["current_runs"] == [] for worker in shown.values())


# -- a stalled worker is fenced -----------------------------------------------------------------------------------

@pytest.mark.reliability
def test_a_stalled_worker_whose_run_was_taken_back_abandons_it(pg: str, fleet, tmp_path: Path) -> None:
    trace = tmp_path / "trace.log"
    trace.touch()
    stalled = fleet(pg, 1)
    [run_id] = submit(traced_pipeline(trace, 1.0, 0.2))
    wait_for(lambda: trace.read_text(), "the first step to start on the first worker")
    os.kill(stalled.process.pid, signal.SIGSTOP)  # as a long GC pause or a frozen VM: alive, silent
    try:
        other = fleet(pg, 1)
        took = wait_for(lambda: Run.get_by_id(run_id).status in TERMINAL, "the run to end on the other worker")
    finally:
        os.kill(stalled.process.pid, signal.SIGCONT)
    ended = Run.get_by_id(run_id)
    lines_then = queries.last_log_seq(run_id)
    wait_for(lambda: "abandoned" in stalled.output() or "internal error" in stalled.output(),
             "the stalled worker to let the run go", timeout=30)
    print(f"\nthe run ended on the other worker {took:.1f} s after the stall")

    assert "abandoned" in stalled.output(), stalled.output()
    run = Run.get_by_id(run_id)
    assert (ended.status, ended.worker_id, ended.attempt) == ("completed", other.worker_id, 2), log_text(run_id)
    assert (run.status, run.completed_at, run.worker_id) == ("completed", ended.completed_at, other.worker_id)
    assert queries.last_log_seq(run_id) == lines_then, "the stalled worker wrote to a run it no longer held"
    assert f"worker {stalled.worker_id} lost; attempt 2 of 2" in log_text(run_id)
    assert_never_twice_at_once(trace)


# -- cancel and the workers listing through the API -------------------------------------------------------------

@pytest.fixture
def api(pg: str) -> Iterator[httpx.Client]:
    """The API (api.app.create_app) on a real uvicorn on loopback, as a viewer."""
    server = uvicorn.Server(uvicorn.Config(create_app(database_url=pg, rate_limit="100000/minute"), host="127.0.0.1",
                                           port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), "uvicorn to start")
    port = server.servers[0].sockets[0].getsockname()[1]
    token, _ = create_token("workers test", "viewer")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/pipelines", trust_env=False, timeout=30,
                      headers={"Authorization": f"Bearer {token}"}) as client:
        yield client
    server.should_exit = True
    thread.join(10)


@pytest.mark.reliability
def test_a_cancel_reaches_the_worker_and_the_api_lists_workers(pg: str, api: httpx.Client, fleet,
                                                              tmp_path: Path) -> None:
    pid_file = tmp_path / "step.pid"
    worker = fleet(pg, 2)
    [run_id] = submit(f"name: long\njobs:\n  work:\n    steps:\n      - run: |\n          echo $$ > {pid_file}\n"
                      f"          sleep 300 &\n          sleep 300\n")
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), "the long step to start")
    group = int(pid_file.read_text())

    listed = api.get("/workers")
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["success"] is True and body["count"] == len(body["workers"]) == 1
    [shown] = body["workers"]
    assert shown["worker_id"] == worker.worker_id and shown["pid"] == worker.process.pid
    assert shown["alive"] is True and shown["concurrency"] == 2 and shown["current_runs"] == [run_id]
    assert shown["heartbeat_at"].endswith("Z") and shown["started_at"] <= shown["heartbeat_at"]
    assert api.get("/workers", headers={"Authorization": ""}).status_code == 401

    assert queue.request_cancel(run_id) == "running"
    took = wait_for(lambda: Run.get_by_id(run_id).status in TERMINAL, "the run to end after the cancel")
    print(f"\nthe cancel took {took:.2f} s to end the run (heartbeat {HEARTBEAT_SECONDS} s, kill grace 1 s)")
    run = Run.get_by_id(run_id)
    assert (run.status, run.error) == ("cancelled", "cancelled"), log_text(run_id)
    assert not processgroup.group_alive(group), "the cancelled step's processes are still running"
    assert api.get("/workers").json()["workers"][0]["current_runs"] == []

    worker.stop()
    assert api.get("/workers").json() == {"success": True, "workers": [], "count": 0}, "a stopped worker is listed"


# -- the queue's fencing, leases and take-back, on both backends --------------------------------------------------

def test_take_back_requeues_then_fails_and_fences_the_old_claim(db) -> None:
    spec = load_spec("name: q\nmax-attempts: 2\njobs:\n  a:\n    steps:\n      - run: 'true'\n", "q.yml")
    run_id = queue.submit(spec, {}, trigger="api").id
    expire = Run.update(heartbeat_at=queue.database_now() - timedelta(seconds=60))

    first = queue.claim("A")
    assert (first.id, first.attempt, first.worker_id) == (run_id, 1, "A")
    assert queue.claim("B") is None, "a running run was claimed twice"
    assert queue.take_back_lost_runs(30) == [], "a fresh lease was taken back"
    expire.where(Run.id == run_id).execute()
    assert queue.take_back_lost_runs(30) == [run_id]
    assert queue.take_back_lost_runs(30) == []

    second = queue.claim("B")
    assert (second.id, second.attempt) == (run_id, 2)
    assert queue.heartbeat("A", [run_id]) == [run_id], "the old claim was not told to stop"
    assert not queue.owns(first) and not queue.record_end(first, status="cancelled")
    assert queue.heartbeat("B", [run_id]) == []
    assert queue.owns(second)

    expire.where(Run.id == run_id).execute()
    assert queue.take_back_lost_runs(30) == [run_id]
    run = Run.get_by_id(run_id)
    assert (run.status, run.error) == ("failed", "worker_lost")
    assert not queue.record_end(second, status="completed"), "a claim recorded over a run that was failed"
    assert log_text(run_id).splitlines() == ["worker A lost; attempt 2 of 2",
                                             "worker B lost; no attempts left (2 of 2)"]

    cancelled = queue.submit(spec, {}, trigger="api").id
    queue.claim("C")
    assert queue.request_cancel(cancelled) == "running"
    assert queue.heartbeat("C", [cancelled]) == [cancelled]
    expire.where(Run.id == cancelled).execute()
    assert queue.take_back_lost_runs(30) == [cancelled]
    assert Run.get_by_id(cancelled).status == "cancelled"


def test_runs_executed_in_place_are_never_taken_back(db) -> None:
    spec = load_spec("name: q\njobs:\n  a:\n    steps:\n      - run: 'true'\n", "q.yml")
    run = Run.create(status="running", trigger="cli", pipeline_name="q", spec_yaml=spec.source)  # `forgeyard run`
    assert queue.take_back_lost_runs(0) == [] and Run.get_by_id(run.id).status == "running"
    assert queue.owns(Run.get_by_id(run.id))
