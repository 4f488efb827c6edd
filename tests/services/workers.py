"""`forgeyard worker` processes for tests: start, register, stop; runs submitted and awaited; execution traces.

Fixtures `fleet` (start workers on a database URL) and `pg` (a fresh PostgreSQL database, connected) are
imported by tests/conftest.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runner import database, queries, queue
from runner.models import Run, WorkerRecord
from runner.spec import load_spec
from tests.services.postgres import fresh_database

REPO_ROOT = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 3.0
HEARTBEAT_SECONDS = 0.5
WAIT_SECONDS = 90.0  # a generous bound for things that take a few seconds: never a timing assertion
TERMINAL = ("completed", "failed", "cancelled")

# Each step appends "RUN PID start|end TIME" around its work: a run's steps are sequential, so two of its
# intervals that overlap can only mean two executions of the run at once.
TRACED_STEP = ('      - run: |\n'
               '          echo "$FORGEYARD_RUN_ID $$ start $(date +%s.%N)" >> "$TRACE"\n'
               '          sleep {seconds}\n'
               '          echo "$FORGEYARD_RUN_ID $$ end $(date +%s.%N)" >> "$TRACE"\n')


def traced_pipeline(trace: Path, *step_seconds: float) -> str:
    steps = "".join(TRACED_STEP.format(seconds=seconds) for seconds in step_seconds)
    return f"name: traced\nmax-attempts: 2\nenv:\n  TRACE: {trace}\njobs:\n  work:\n    steps:\n{steps}"


def trace_intervals(trace: Path) -> dict[int, list[tuple[float, float]]]:
    """Per run, the (start, end) of every step execution; a step that never ended lasts forever."""
    events: dict[tuple[int, str], dict[str, float]] = defaultdict(dict)
    for line in trace.read_text().splitlines():
        run_id, pid, what, moment = line.split()
        events[(int(run_id), pid)][what] = float(moment)
    intervals: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for (run_id, _pid), times in events.items():
        intervals[run_id].append((times["start"], times.get("end", float("inf"))))
    return intervals


def assert_never_twice_at_once(trace: Path) -> dict[int, list[tuple[float, float]]]:
    intervals = trace_intervals(trace)
    for run_id, spans in intervals.items():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert end <= start, f"run {run_id} executed twice at once: {spans}"
    return intervals


def wait_for(condition: Callable[[], object], what: str, timeout: float = WAIT_SECONDS) -> float:
    """Poll until `condition()` is true; returns the seconds it took (printed by callers, never asserted)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"gave up waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - started


class WorkerProcess:
    """One `forgeyard worker --concurrency N` process with its own log file."""

    def __init__(self, env: dict[str, str], log: Path, concurrency: int = 2):
        self.log = log
        with open(log, "ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "runner", "worker", "--concurrency", str(concurrency)], cwd=REPO_ROOT,
                env=env, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.worker_id = ""

    def registered(self) -> bool:
        record = WorkerRecord.get_or_none((WorkerRecord.pid == self.process.pid) & WorkerRecord.stopped_at.is_null())
        assert self.process.poll() is None, f"worker exited: {self.output()}"
        self.worker_id = record.worker_id if record else ""
        return record is not None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """start(url, concurrency) → a registered worker process; all are stopped (SIGTERM) at the end."""
    started: list[WorkerProcess] = []
    env = {key: value for key, value in os.environ.items() if not key.startswith(("FORGEYARD_", "GIT_"))}
    env.update({"FORGEYARD_HOME": str(tmp_path / "home"), "FORGEYARD_LEASE_SECONDS": str(LEASE_SECONDS),
                "FORGEYARD_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS), "FORGEYARD_KILL_GRACE": "1",
                "PYTHONUNBUFFERED": "1"})

    def start(url: str, concurrency: int = 2) -> WorkerProcess:
        worker = WorkerProcess({**env, "FORGEYARD_DATABASE_URL": url}, tmp_path / f"worker-{len(started)}.log",
                               concurrency)
        started.append(worker)
        wait_for(worker.registered, "the worker to register")
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()
        database.close()


def connect(url: str) -> str:
    database.connect(url)
    return url


@pytest.fixture
def pg(postgres_url: str) -> str:
    return connect(fresh_database(postgres_url))


def submit(yaml_text: str, count: int = 1) -> list[int]:
    spec = load_spec(yaml_text, "traced.yml")
    return [queue.submit(spec, {}, trigger="api").id for _ in range(count)]


def log_text(run_id: int) -> str:
    return "\n".join(line.text for line in queries.iter_log_lines(run_id))


def running_on(worker: WorkerProcess) -> list[int]:
    running = (Run.status == "running") & (Run.worker_id == worker.worker_id)
    return [run.id for run in Run.select(Run.id).where(running).order_by(Run.id)]


def kill_while_running(worker: WorkerProcess) -> list[int]:
    """SIGKILL `worker` while it holds running runs (stopped first, so the runs it holds are known); returns them."""
    while True:
        wait_for(lambda: running_on(worker), "the worker to hold a running run")
        os.kill(worker.process.pid, signal.SIGSTOP)
        held = running_on(worker)
        if held:
            worker.process.kill()
            worker.process.wait(10)
            return held
        os.kill(worker.process.pid, signal.SIGCONT)  # it finished its run just now: try again


def all_done(run_ids: list[int]) -> bool:
    return Run.select().where(Run.id.in_(run_ids) & Run.status.not_in(TERMINAL)).count() == 0
