"""The workers sharing the database as `forgeyard workers` and GET /api/pipelines/workers show them; reads only."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from runner import queue, settings
from runner.models import Run, WorkerRecord
from runner.timestamps import format_timestamp

LISTED_FOR = timedelta(days=1)  # a worker that died without stopping stays listed (not alive) this long


def list_workers() -> list[dict[str, Any]]:
    """Workers not stopped, oldest first: alive while their heartbeat is within the lease, and their running runs."""
    now = queue.database_now()
    alive_since = now - timedelta(seconds=settings.lease_seconds())
    workers = list(WorkerRecord.select()
                   .where(WorkerRecord.stopped_at.is_null() & (WorkerRecord.heartbeat_at >= now - LISTED_FOR))
                   .order_by(WorkerRecord.started_at, WorkerRecord.id))
    current: dict[str, list[int]] = {worker.worker_id: [] for worker in workers}
    if current:
        running = (Run.select(Run.id, Run.worker_id)
                   .where((Run.status == "running") & Run.worker_id.in_(list(current))).order_by(Run.id))
        for run in running:
            current[run.worker_id].append(run.id)
    return [{"worker_id": worker.worker_id, "hostname": worker.hostname, "pid": worker.pid,
             "concurrency": worker.concurrency, "started_at": format_timestamp(worker.started_at),
             "heartbeat_at": format_timestamp(worker.heartbeat_at), "alive": worker.heartbeat_at >= alive_since,
             "current_runs": current[worker.worker_id]} for worker in workers]
