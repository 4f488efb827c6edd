"""Records shaped as the API reference documents them (runs with their jobs, outputs, repositories); reads only,
writes nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from runner import catalog, queries, settings
from runner.diagnostics import DiagnosticError
from runner.models import BuildOutput, Run, StepResult
from runner.plan import build_plan
from runner.spec import load_spec
from runner.timestamps import format_timestamp, utcnow

TERMINAL = ("completed", "failed", "cancelled")  # a run in one of these has ended
LIST_LOG_TAIL_LINES = 20  # a list carries a bounded tail of each run's log; one run carries it whole
# What a list entry shows: a page leaves the spec, plan and inputs (often the bulk of a row) in the database.
LIST_COLUMNS = (Run.id, Run.status, Run.steps_to_execute_json, Run.git_repository_id, Run.output_type, Run.registry_id,
                Run.started_at, Run.completed_at, Run.created_at, Run.trigger, Run.pipeline_name, Run.error,
                Run.attempt, Run.custom_parameters_json, Run.queued_at)


def iso(moment: datetime | None) -> str | None:
    return format_timestamp(moment) if moment else None


def run_view(run: Run) -> dict[str, Any]:
    """One run as GET /runs/{id} shows it: its whole log, repository and build outputs."""
    view = _run_fields(run, log_text(run.id))
    view["repository_info"] = repository_info(run)
    view["build_outputs"] = [output_view(o) for o in queries.build_outputs(run.id)]
    view["jobs"] = jobs_view(run)
    return view


def jobs_view(run: Run) -> list[dict[str, Any]]:
    """The run's jobs in plan order, each with its needs (job ids) and its steps' state; none when the run ended
    before it was planned. A job or step with no record yet is pending, or skipped once the run has ended."""
    plan = _plan(run)
    if not plan:
        return []
    jobs = {job.job_id: job for job in queries.job_results(run.id)}
    steps = {(step.job_id, step.step_index): step for step in queries.step_results(run.id)}
    legs: dict[str, list[str]] = {}  # a need names a job's key; a matrix job's legs all stand for it
    for job in plan["jobs"]:
        legs.setdefault(job["key"], []).append(job["id"])
    unrecorded = "skipped" if run.status in TERMINAL else "pending"
    views = []
    for job in plan["jobs"]:
        record = jobs.get(job["id"])
        status = record.status if record else unrecorded
        views.append({
            "id": job["id"], "key": job["key"], "name": record.name if record else job["name"], "status": status,
            "needs": [leg for key in job["needs"] for leg in legs.get(key, ())],
            "started_at": iso(record.started_at) if record else None,
            "completed_at": iso(record.completed_at) if record else None,
            "steps": [_step_view(step, steps.get((job["id"], step["index"])),
                                 "pending" if status in ("pending", "running") else "skipped")
                      for step in job["steps"]],
        })
    return views


def _plan(run: Run) -> dict[str, Any] | None:
    """The plan stored when the run started; while it waits, the same plan made the same way from its spec."""
    if run.plan_json or run.status != "pending":
        return run.plan
    try:
        spec = load_spec(run.spec_yaml, run.pipeline_file or run.pipeline_name)
        return build_plan(spec.data, run.inputs or {}, name=spec.name).to_dict()
    except (DiagnosticError, ValueError):  # it fails when it starts, saying why: until then it shows no jobs
        return None


def _step_view(planned: dict[str, Any], record: StepResult | None, unrecorded: str) -> dict[str, Any]:
    return {"index": planned["index"], "id": planned["id"], "name": planned["name"],
            "kind": "uses" if planned["uses"] else "run", "uses": planned["uses"],
            "status": record.status if record else unrecorded, "outcome": record.outcome if record else None,
            "exit_code": record.exit_code if record else None,
            "started_at": iso(record.started_at) if record else None,
            "completed_at": iso(record.completed_at) if record else None}


def run_list_views(runs: list[Run]) -> list[dict[str, Any]]:
    """Runs as GET /runs lists them, each with the tail of its log, its repository and its outputs; the page's
    tails, outputs and repositories come from one query each, whatever the page size."""
    ids = [run.id for run in runs]
    tails = queries.log_tails(ids, LIST_LOG_TAIL_LINES)
    outputs: dict[int, list[dict[str, Any]]] = {}
    for output in BuildOutput.select().where(BuildOutput.run.in_(ids)).order_by(BuildOutput.id) if ids else ():
        outputs.setdefault(output.run_id, []).append(output_view(output))
    repository_ids = {run.git_repository_id for run in runs} - {None}
    repositories = {repository.id: repository for repository in catalog.Repository.select().where(
        catalog.Repository.id.in_(repository_ids))} if repository_ids else {}
    return [{**_run_fields(run, "".join(f"{text}\n" for text in tails.get(run.id, ()))),
             "repository_info": repository_info(run, repositories.get(run.git_repository_id)),
             "build_outputs": outputs.get(run.id, [])} for run in runs]


def _run_fields(run: Run, logs: str) -> dict[str, Any]:
    return {
        "id": run.id,
        "status": run.status,
        "steps_to_execute": run.steps_to_execute or [],
        "git_repository_id": run.git_repository_id,
        "output_type": run.output_type,
        "registry_id": run.registry_id,
        "queued_at": iso(run.queued_at),
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


def repository_info(run: Run, repository: catalog.Repository | None = None) -> dict[str, Any]:
    """The run's repository as the reference shows it; `repository` when the caller has already read it."""
    if run.git_repository_id is None:
        return {"id": None, "name": "Open WebUI (official)", "url": settings.official_repo_url(), "type": "https",
                "is_verified": True}
    repository = repository or catalog.Repository.get_or_none(catalog.Repository.id == run.git_repository_id)
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
