"""The run queue in the database: enqueue, claim (one worker per run), heartbeat, cancel, and take back lost runs.

PostgreSQL claims with `FOR UPDATE SKIP LOCKED`; SQLite serialises claims with `BEGIN IMMEDIATE`. No run
executes anywhere but through a claim, so a run is never running on two workers at once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from runner import queries
from runner.database import db, peewee, transaction_immediate
from runner.models import Run
from runner.timestamps import utcnow

DEFAULT_LEASE_SECONDS = 30.0  # a running run whose worker has not heartbeated for this long is taken back


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
    """Take the oldest queued run for `worker_id`, marking it running; None when the queue is empty."""
    with transaction_immediate():
        query = (Run.select(Run.id)
                 .where((Run.status == "pending") & Run.queued_at.is_null(False))
                 .order_by(Run.id).limit(1))
        if isinstance(db.obj, peewee.PostgresqlDatabase):
            query = query.for_update("FOR UPDATE SKIP LOCKED")
        row = query.first()
        if row is None:
            return None
        now = utcnow()
        Run.update(status="running", worker_id=worker_id, heartbeat_at=now, started_at=now,
                   attempt=Run.attempt + 1).where(Run.id == row.id).execute()
    return Run.get_by_id(row.id)


def heartbeat(worker_id: str, run_ids: list[int]) -> list[int]:
    """Renew the lease of `run_ids`; returns those whose cancellation was requested meanwhile."""
    if not run_ids:
        return []
    owned = (Run.worker_id == worker_id) & (Run.id.in_(run_ids)) & (Run.status == "running")
    Run.update(heartbeat_at=utcnow()).where(owned).execute()
    return [run.id for run in Run.select(Run.id).where(owned & (Run.cancel_requested == True))]  # noqa: E712


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


def take_back_lost_runs(lease_seconds: float = DEFAULT_LEASE_SECONDS) -> list[int]:
    """Runs whose worker stopped heartbeating: re-queued while attempts remain, otherwise failed."""
    cutoff = utcnow() - timedelta(seconds=lease_seconds)
    taken = []
    stale = Run.select().where((Run.status == "running") & (Run.heartbeat_at.is_null() | (Run.heartbeat_at < cutoff)))
    for run in stale:
        with transaction_immediate():
            again = run.attempt < run.max_attempts and not run.cancel_requested
            fields = ({"status": "pending", "queued_at": utcnow(), "worker_id": None} if again else
                      {"status": "failed", "error": "worker_lost", "completed_at": utcnow()})
            changed = Run.update(**fields).where((Run.id == run.id) & (Run.status == "running")
                                                 & (Run.attempt == run.attempt)).execute()
            if not changed:
                continue  # its worker came back, or another reaper was first
            text = (f"worker {run.worker_id} lost; attempt {run.attempt + 1} of {run.max_attempts}" if again else
                    f"worker {run.worker_id} lost; no attempts left ({run.attempt} of {run.max_attempts})")
            queries.append_log_line(run.id, text)
        taken.append(run.id)
    return taken
