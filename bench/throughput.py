"""Row 8, throughput: 200 queued runs of a 3-step pipeline drained by `forgeyard serve`'s embedded workers (SQLite,
PostgreSQL), then by 1 and by 3 `forgeyard worker` processes on PostgreSQL; it only measures."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from bench.context import Context
from bench.engine import Home, forgeyard_command
from bench.measure import Stats
from bench.report import Row
from bench.services import Unavailable

SPEC = ("name: three steps\non: [api, manual]\njobs:\n  build:\n    steps:\n      - run: echo one\n"
        "      - run: echo two\n      - run: echo three\n")
DRAIN_TIMEOUT = 900.0


def _queue_and_drain(database_url: str, runs: int) -> float:
    """Record `runs` pending runs, queue them all in one UPDATE, and wait until every one ended: runs per second.

    Timed from the UPDATE to the last run's completed_at (both this machine's clock); workers find the runs at
    their next poll (≤ 1 s), as they would find runs queued by another machine.
    """
    from runner import database
    from runner.models import Run
    from runner.runs import create_run
    from runner.spec import load_spec
    from runner.timestamps import utcnow

    database.connect(database_url)
    spec = load_spec(SPEC, "three-steps.yml")
    ids = [create_run(spec, {}, trigger="api").id for _ in range(runs)]
    queued_at = utcnow()
    Run.update(queued_at=queued_at).where(Run.id.in_(ids)).execute()
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while time.monotonic() < deadline:
        done = Run.select().where(Run.id.in_(ids) & Run.status.in_(("completed", "failed", "cancelled"))).count()
        if done == runs:
            break
        time.sleep(0.2)
    else:
        raise RuntimeError(f"only {done} of {runs} runs ended within {DRAIN_TIMEOUT:.0f} s")
    failed = Run.select().where(Run.id.in_(ids) & (Run.status != "completed")).count()
    if failed:
        raise RuntimeError(f"{failed} of {runs} runs did not complete")
    last = max(run.completed_at for run in Run.select(Run.completed_at).where(Run.id.in_(ids)))
    database.close()
    return runs / (last - queued_at).total_seconds()


def _embedded(ctx: Context, name: str, database_url: str | None, stops: list) -> Callable[[int], float]:
    from tests.services.api_server import start_api_server

    extra = {"FORGEYARD_DATABASE_URL": database_url} if database_url else {}
    server = start_api_server(ctx.scratch(f"throughput-{name}"), workers=2, extra_env=extra)
    stops.append(server.stop)
    return lambda runs: _queue_and_drain(server.database_url, runs)


def _worker_processes(ctx: Context, name: str, database_url: str, count: int,
                      stops: list) -> Callable[[int], float]:
    home = Home(ctx.scratch(f"throughput-{name}") / "home", database_url=database_url)
    home.run("workers")  # migrates the database before the workers race to
    processes = []
    for number in range(count):
        with open(home.root / f"worker-{number}.log", "wb") as log:
            processes.append(subprocess.Popen([*forgeyard_command(), "worker"], env=home.env, stdout=log,
                                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                              start_new_session=True))

    def stop() -> None:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)

    stops.append(stop)
    _wait_for_workers(database_url, count, processes, home.root)
    return lambda runs: _queue_and_drain(database_url, runs)


def _wait_for_workers(database_url: str, count: int, processes, folder: Path) -> None:
    from runner import database
    from runner.models import WorkerRecord

    database.connect(database_url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(process.poll() is not None for process in processes):
            logs = " ".join(path.read_text(errors="replace")[-300:] for path in folder.glob("worker-*.log"))
            raise RuntimeError(f"a forgeyard worker exited: {logs}")
        if WorkerRecord.select().where(WorkerRecord.stopped_at.is_null()).count() >= count:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{count} workers did not register within 60 s")


def _measure(ctx: Context, runs: int, reps: int, stops: list) -> tuple[dict[str, list[float]], dict[str, str]]:
    configurations: dict[str, Callable[[int], float]] = {}
    reasons: dict[str, str] = {}
    try:
        configurations["8a"] = _embedded(ctx, "serve-sqlite", None, stops)
    except (RuntimeError, OSError) as error:
        reasons["8a"] = str(error)
    try:
        configurations["8b"] = _embedded(ctx, "serve-pg", ctx.services.postgres_database(), stops)
        configurations["8c"] = _worker_processes(ctx, "worker-1", ctx.services.postgres_database(), 1, stops)
        configurations["8d"] = _worker_processes(ctx, "worker-3", ctx.services.postgres_database(), 3, stops)
    except (Unavailable, RuntimeError, OSError) as error:
        for key in ("8b", "8c", "8d"):
            if key not in configurations:
                reasons[key] = str(error)
    ctx.log(f"row 8: {runs} runs × {reps} rounds on {', '.join(configurations)}")
    rates: dict[str, list[float]] = {key: [] for key in configurations}
    for round_number in range(reps):  # the same order rotated, like measure.alternate, one drain at a time
        keys = list(configurations)
        shift = round_number % len(keys)
        for key in keys[shift:] + keys[:shift]:
            rates[key].append(configurations[key](runs))
    return rates, reasons


def run(ctx: Context) -> list[Row]:
    runs = ctx.size(200, 20)
    reps = ctx.reps(2, 1)
    stops: list[Callable[[], None]] = []
    try:
        rates, reasons = _measure(ctx, runs, reps, stops)
    finally:
        for stop in reversed(stops):  # idle servers and workers would load the rows after this one
            stop()
    what = {"8a": "`forgeyard serve --workers 2` (embedded), SQLite",
            "8b": "`forgeyard serve --workers 2` (embedded), PostgreSQL",
            "8c": "1 `forgeyard worker` process (2 slots), PostgreSQL",
            "8d": "3 `forgeyard worker` processes (2 slots each), PostgreSQL, vs 1"}
    rows = []
    for key, label in what.items():
        label = f"{runs} queued 3-step runs drained: {label}"
        if key not in rates:
            rows.append(Row.missing(key, label, reasons.get(key, "not started")))
            continue
        stats = Stats.of(rates[key], "runs/s")
        if key == "8d" and "8c" in rates:
            one = Stats.of(rates["8c"], "runs/s")
            rows.append(Row(key, label, stats, one, "1 worker", notes=[
                f"ratio 3 workers / 1 worker = {stats.median / one.median:.2f} on {os.cpu_count()} cores; "
                "runs queued in one UPDATE, timed to the last run's completed_at"]))
        else:
            rows.append(Row(key, label, stats))
    return rows
