"""Records shaped as the API reference documents them (runs, outputs, repositories); reads only, writes nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from runner import catalog, queries, settings
from runner.models import BuildOutput, Run
from runner.timestamps import format_timestamp, utcnow

LIST_LOG_TAIL_LINES = 20  # a list carries a bounded tail of each run's log; one run carries it whole
# What a list entry shows: a page leaves the spec, plan and inputs (often the bulk of a row) in the database.
LIST_COLUMNS = (Run.id, Run.status, Run.steps_to_execute_json, Run.git_repository_id, Run.output_type, Run.registry_id,
                Run.started_at, Run.completed_at, Run.created_at, Run.trigger, Run.pipeline_name, Run.error,
                Run.attempt, Run.custom_parameters_json)


def iso(moment: datetime | None) -> str | None:
    return format_timestamp(moment) if moment else None


def run_view(run: Run) -> dict[str, Any]:
    """One run as GET /runs/{id} shows it: its whole log, repository and build outputs."""
    view = _run_fields(run, log_text(run.id))
    view["repository_info"] = repository_info(run)
    view["build_outputs"] = [output_view(o) for o in queries.build_outputs(run.id)]
    return view


def run_list_views(runs: list[Run]) -> list[dict[str, Any]]:
    """Runs as GET /runs lists them, each with the tail of its log; the page's tails come from one query."""
    tails = queries.log_tails([run.id for run in runs], LIST_LOG_TAIL_LINES)
    return [_run_fields(run, "".join(f"{text}\n" for text in tails.get(run.id, ()))) for run in runs]


def _run_fields(run: Run, logs: str) -> dict[str, Any]:
    return {
        "id": run.id,
        "status": run.status,
        "steps_to_execute": run.steps_to_execute or [],
        "git_repository_id": run.git_repository_id,
        "output_type": run.output_type,
        "registry_id": run.registry_id,
        "started_at": iso(run.started_at or run.created_at),
        "completed_at": iso(run.completed_at),
        "logs": logs,
        "created_at": iso(run.created_at),
        "trigger": run.trigger,
        "pipeline": run.pipeline_name,
        "error": run.error,
        "attempt": run.attempt,
        "custom_parameters": run.custom_parameters or {},
    }


def log_text(run_id: int) -> str:
    """The run's whole log as one text."""
    return "".join(f"{line.text}\n" for line in queries.iter_log_lines(run_id))


def repository_info(run: Run) -> dict[str, Any]:
    if run.git_repository_id is None:
        return {"id": None, "name": "Open WebUI (official)", "url": settings.official_repo_url(), "type": "https",
                "is_verified": True}
    repository = catalog.Repository.get_or_none(catalog.Repository.id == run.git_repository_id)
    if repository is None:
        return {"id": run.git_repository_id, "name": None, "url": None, "type": None, "is_verified": False,
                "deleted": True}
    return {"id": repository.id, "name": repository.name, "url": repository.url, "type": repository.type,
            "is_verified": repository.is_verified, "deleted": repository.deleted_at is not None}


def output_view(output: BuildOutput) -> dict[str, Any]:
    view: dict[str, Any] = {"id": output.id, "output_type": output.output_type}
    if output.output_type == "zip":
        view.update(file_path=output.file_path, file_size_bytes=output.file_size_bytes,
                    checksum_sha256=output.checksum_sha256,
                    download_url=f"/api/pipelines/outputs/{output.id}/download")
    else:
        view.update(image_url=output.image_url, image_id=output.image_id)
    view.update(download_count=output.download_count, expires_at=iso(output.expires_at),
                created_at=iso(output.created_at), expired=_expired(output), run_id=output.run_id)
    return view


def _expired(output: BuildOutput) -> bool:
    return output.cleaned_at is not None or (output.expires_at is not None and output.expires_at < utcnow())
