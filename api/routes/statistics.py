"""Build steps, execution statistics and repository usage, computed by SQL aggregates over the period asked."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, time, timedelta

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from api.endpoint import endpoint, int_param, path_id
from api.errors import not_found
from api.views import iso
from runner import catalog
from runner.database import peewee
from runner.models import BuildOutput, Run, RunCount
from runner.steps import all_steps
from runner.timestamps import utcnow


@endpoint("viewer")
def build_steps(_request: Request) -> JSONResponse:
    steps = [{"key": s.key, "name": s.name, "description": s.description, "order": s.order, "required": s.required,
              "dependencies": list(s.requires)} for s in all_steps()]
    return JSONResponse({"success": True, "build_steps": steps, "count": len(steps)})


def _status_counts(where) -> dict[str, int]:
    rows = Run.select(Run.status, peewee.fn.COUNT(Run.id).alias("n")).where(where).group_by(Run.status)
    return {row.status: row.n for row in rows}


def _rate(completed: int, total: int) -> float:
    return round(100.0 * completed / total, 1) if total else 0.0


@endpoint("viewer")
def statistics(request: Request) -> JSONResponse:
    days = int_param(request, "days", default=30, low=1, high=3650)
    counts: Counter[str] = Counter()
    output_types: Counter[str] = Counter()
    step_usage = dict.fromkeys((step.key for step in all_steps()), 0)
    outputs = 0
    for status, output_type, steps_json, runs, made in _period_counts(utcnow() - timedelta(days=days)):
        outputs += int(made)
        if runs:
            counts[status] += int(runs)
            if output_type:
                output_types[output_type] += int(runs)
            for key in set(json.loads(steps_json or "[]")) & step_usage.keys():
                step_usage[key] += int(runs)
    total = sum(counts.values())
    return JSONResponse({"success": True, "statistics": {
        "period_days": days, "total_runs": total, "completed_runs": counts["completed"],
        "failed_runs": counts["failed"], "running_runs": counts["running"], "pending_runs": counts["pending"],
        "cancelled_runs": counts["cancelled"], "success_rate": _rate(counts["completed"], total),
        "step_usage": step_usage, "output_types": dict(sorted(output_types.items())),
        "total_build_outputs": outputs,
    }})


def _period_counts(since: datetime) -> list[tuple]:
    """(status, output type, steps, runs, their build outputs) of the runs created since `since` ("" for none).

    The days after since's own are summed from run_counts, a few rows a day; the rest of since's day is counted
    from its runs, through the created_at index.
    """
    next_day = datetime.combine(since.date() + timedelta(days=1), time())
    whole_days = (RunCount.select(RunCount.status, RunCount.output_type, RunCount.steps_to_execute_json,
                                  peewee.fn.SUM(RunCount.runs), peewee.fn.SUM(RunCount.outputs))
                  .where(RunCount.day >= next_day.date())
                  .group_by(RunCount.status, RunCount.output_type, RunCount.steps_to_execute_json))
    made = BuildOutput.select(peewee.fn.COUNT(BuildOutput.id)).where(BuildOutput.run == Run.id)
    key = (Run.status, peewee.fn.COALESCE(Run.output_type, ""), peewee.fn.COALESCE(Run.steps_to_execute_json, ""))
    first_day = (Run.select(*key, peewee.fn.COUNT(Run.id), peewee.fn.SUM(made))
                 .where((Run.created_at >= since) & (Run.created_at < next_day)).group_by(*key))
    return [*whole_days.tuples(), *first_day.tuples()]


@endpoint("viewer")
def repository_usage(request: Request) -> JSONResponse:
    repository_id = path_id(request, "repository_id", "repository")
    repository = catalog.Repository.get_or_none(catalog.Repository.id == repository_id)
    if repository is None:
        raise not_found(f"repository {repository_id}")
    of_repository = Run.git_repository_id == repository_id
    counts = _status_counts(of_repository)
    total = sum(counts.values())
    outputs = BuildOutput.select().join(Run).where(of_repository).count()
    latest = Run.select(Run.created_at).where(of_repository).order_by(Run.created_at.desc()).first()
    last_used = latest.created_at if latest else None
    return JSONResponse({"success": True, "repository_usage": {
        "repository_id": repository.id, "repository_name": repository.name, "repository_url": repository.url,
        "is_verified": repository.is_verified, "total_pipeline_runs": total,
        "completed_runs": counts.get("completed", 0), "failed_runs": counts.get("failed", 0),
        "success_rate": _rate(counts.get("completed", 0), total), "total_build_outputs": outputs,
        "last_used_at": iso(last_used or repository.last_used_at), "created_at": iso(repository.created_at),
    }})


routes = [
    Route("/steps", build_steps, methods=["GET"]),
    Route("/statistics", statistics, methods=["GET"]),
    Route("/repositories/{repository_id:int}/usage", repository_usage, methods=["GET"]),
]
