"""Build steps, execution statistics and repository usage, computed by SQL aggregates over the period asked."""

from __future__ import annotations

from datetime import timedelta

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from api.endpoint import endpoint, int_param, path_id
from api.errors import not_found
from api.views import iso
from runner import catalog
from runner.database import peewee
from runner.models import BuildOutput, Run
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
    since = utcnow() - timedelta(days=days)
    in_period = Run.created_at >= since
    counts = _status_counts(in_period)
    total = sum(counts.values())
    step_usage = {}
    for step in all_steps():
        # steps_to_execute_json holds a JSON list of keys; a quoted-key match counts the runs that used it.
        used = Run.select().where(in_period & Run.steps_to_execute_json.contains(f'"{step.key}"')).count()
        step_usage[step.key] = used
    output_types = {row.output_type: row.n for row in
                    Run.select(Run.output_type, peewee.fn.COUNT(Run.id).alias("n"))
                    .where(in_period & Run.output_type.is_null(False)).group_by(Run.output_type)}
    outputs = BuildOutput.select().join(Run).where(in_period).count()
    return JSONResponse({"success": True, "statistics": {
        "period_days": days, "total_runs": total, "completed_runs": counts.get("completed", 0),
        "failed_runs": counts.get("failed", 0), "running_runs": counts.get("running", 0),
        "pending_runs": counts.get("pending", 0), "cancelled_runs": counts.get("cancelled", 0),
        "success_rate": _rate(counts.get("completed", 0), total), "step_usage": step_usage,
        "output_types": output_types, "total_build_outputs": outputs,
    }})


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
