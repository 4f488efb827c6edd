"""The run queue in the database: enqueue, claim, leases and heartbeats, cancel, take-back; it executes nothing.

PostgreSQL claims with `FOR UPDATE SKIP LOCKED`; SQLite serialises claims with `BEGIN IMMEDIATE`. Leases are
timed by the database's clock, so machines whose clocks differ agree on them. A claim is fenced by its worker
id and attempt number: a worker whose run was taken back can no longer record anything for it.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from typing import Any

from runner import queries, settings
from runner.database import db, peewee, transaction_immediate
from runner.models import Run, WorkerRecord
from runner.timestamps import utcnow


class RunTakenBack(Exception):
    """The run's lease was lost and the run taken back (re-queued or failed); this claim must record nothing."""


def database_now() -> datetime:
    """Now by the database's clock as naive UTC (SQLite is on this machine: its clock is ours)."""
    if isinstance(db.obj, peewee.PostgresqlDatabase):
        return db.obj.execute_sql("SELECT now() AT TIME ZONE 'UTC'").fetchone()[0]
    return utcnow()


# -- runs ---------------------------------------------------------------------------------------------------


def submit(spec, inputs: dict[str, Any], *, trigger: str, **fields: Any) -> Run:
    """Record a run of `spec` and queue it at once (hooks, schedules); InputError when inputs do not fit."""
    from runner.runs import create_run

    run = create_run(spec, inputs, trigger=trigger, **fields)
    enqueue(run.id)
    return Run.get_by_id(run.id)


def enqueue(run_id: int) -> bool:
    """Ask for a pending run to be executed; False when it is not pending or already queued."""
    changed = (Run.update(queued_at=utcnow())
               .where((Run.id == run_id) & (Run.status == "pending") & Run.queued_at.is_null())
               .execute())
    return changed == 1


def claim(worker_id: str) -> Run | None:
    """Take the oldest queued run for `worker_id`, marking it running (next attempt); None when none is queued."""
    with transaction_immediate():
        query = (Run.select(Run.id)
                 .where((Run.status == "pending") & Run.queued_at.is_null(False))
                 .order_by(Run.id).limit(1))
        if isinstance(db.obj, peewee.PostgresqlDatabase):
            query = query.for_update("FOR UPDATE SKIP LOCKED")
        row = query.first()
        if row is None:
            return None
        Run.update(status="running", worker_id=worker_id, heartbeat_at=database_now(), started_at=utcnow(),
                   attempt=Run.attempt + 1).where(Run.id == row.id).execute()
    return Run.get_by_id(row.id)


def heartbeat(worker_id: str, run_ids: list[int]) -> list[int]:
    """Renew the leases of the worker and of `run_ids`; returns the runs it must stop.

    Those are the runs whose cancellation was requested and those no longer this worker's (taken back).
    """
    now = database_now()
    WorkerRecord.update(heartbeat_at=now).where(WorkerRecord.worker_id == worker_id).execute()
    if not run_ids:
        return []
    owned = (Run.worker_id == worker_id) & Run.id.in_(run_ids) & (Run.status == "running")
    Run.update(heartbeat_at=now).where(owned).execute()
    keep = {run.id for run in Run.select(Run.id).where(owned & (Run.cancel_requested == False))}  # noqa: E712
    return [run_id for run_id in run_ids if run_id not in keep]


def _held(run: Run):
    """The claim `run` was returned by (worker and attempt), still running: the fencing condition."""
    return (Run.id == run.id) & (Run.worker_id == run.worker_id) & (Run.attempt == run.attempt) \
        & (Run.status == "running")


def owns(run: Run) -> bool:
    """Whether the claim that returned `run` still holds it (for a run executed in place: it was not taken)."""
    return Run.select(Run.id).where(_held(run)).exists()


def record_end(run: Run, **fields: Any) -> bool:
    """Record how a claimed run ended, in one fenced update; False, writing nothing, when it was taken back."""
    return Run.update(**fields).where(_held(run)).execute() == 1


def request_cancel(run_id: int) -> str | None:
    """Cancel a run: a pending one at once, a running one through its worker. Returns the status it now has."""
    with transaction_immediate():
        run = Run.get_or_none(Run.id == run_id)
        if run is None:
            return None
        if run.status == "pending":
            Run.update(status="cancelled", error="cancelled", completed_at=utcnow()).where(Run.id == run_id).execute()
            return "cancelled"
        if run.status == "running":
            Run.update(cancel_requested=True).where(Run.id == run_id).execute()
        return run.status


def take_back_lost_runs(lease_seconds: float | None = None) -> list[int]:
    """Claimed runs whose worker stopped heartbeating: re-queued while attempts remain, otherwise failed.

    A run being cancelled ends cancelled instead. Runs executed in place (`forgeyard run`) have no worker
    and are never taken. Safe to run from every worker at once: each run is taken by one update.
    """
    lease = settings.lease_seconds() if lease_seconds is None else lease_seconds
    lost = ((Run.status == "running") & Run.worker_id.is_null(False)
            & (Run.heartbeat_at < database_now() - timedelta(seconds=lease)))
    taken = []
    for run in list(Run.select().where(lost)):
        fields, text = _after_loss(run)
        with transaction_immediate():
            # The lease condition again, in the update: a heartbeat since the select keeps the run its worker's.
            if not Run.update(**fields).where(lost & (Run.id == run.id) & (Run.attempt == run.attempt)).execute():
                continue
            queries.append_log_line(run.id, text)
        taken.append(run.id)
    return taken


def _after_loss(run: Run) -> tuple[dict[str, Any], str]:
    lost = f"worker {run.worker_id} lost"
    if run.cancel_requested:
        return ({"status": "cancelled", "error": "cancelled", "completed_at": utcnow()},
                f"{lost}; the run was being cancelled")
    if run.attempt < run.max_attempts:
        return ({"status": "pending", "queued_at": utcnow(), "worker_id": None},
                f"{lost}; attempt {run.attempt + 1} of {run.max_attempts}")
    return ({"status": "failed", "error": "worker_lost", "completed_at": utcnow()},
            f"{lost}; no attempts left ({run.attempt} of {run.max_attempts})")


# -- workers ------------------------------------------------------------------------------------------------


def register_worker(worker_id: str, concurrency: int) -> None:
    """Record a starting worker (its heartbeats renew the record, `worker_stopped` closes it)."""
    now = database_now()
    WorkerRecord.create(worker_id=worker_id, hostname=socket.gethostname(), pid=os.getpid(),
                        concurrency=concurrency, started_at=now, heartbeat_at=now)


def worker_stopped(worker_id: str) -> None:
    WorkerRecord.update(stopped_at=database_now()).where(WorkerRecord.worker_id == worker_id).execute()
