"""Pipeline runs: list, create (from a build request, a stored pipeline or a raw spec) or preview, show, execute,
cancel, re-run, logs."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from api.auth import require
from api.endpoint import by_method, endpoint, int_param, path_id
from api.errors import ApiError, not_found, validation
from api.translate import build_request_yaml, parse_build_request, spec_error
from api.views import LIST_COLUMNS, TERMINAL, run_list_views, run_view
from runner import catalog, queries, queue, settings
from runner.database import db, peewee, transaction_immediate
from runner.diagnostics import DiagnosticError
from runner.expressions import ExpressionError, reference_offsets
from runner.lint import expression_texts
from runner.models import RUN_STATUSES, Run
from runner.plan import InputError, resolve_inputs
from runner.runs import create_run as record_run
from runner.spec import Spec, load_spec
from runner.timestamps import format_timestamp
from runner.triggers import accepts

CREATED_LINE = "Pipeline run created. Waiting for execution."
MAX_WAIT_SECONDS = 300
MAX_PAGE = 1000  # runs in one list answer, with or without ?limit= (each carries a log tail)


@endpoint("viewer")
def list_runs(request: Request) -> JSONResponse:
    status = request.query_params.get("status")
    if status is not None and status not in RUN_STATUSES:
        raise validation(f"status must be one of {', '.join(RUN_STATUSES)}")
    limit = int_param(request, "limit", default=MAX_PAGE, low=1, high=MAX_PAGE)
    offset = int_param(request, "offset", default=0, low=0)
    before = int_param(request, "before", low=1)
    with queries.snapshot():  # the total and the page of one moment: a deep page is found from the total
        total = queries.count_runs(status)
        runs = queries.list_runs(status=status, limit=limit, offset=offset, before=before, total=total,
                                 columns=LIST_COLUMNS)
    return JSONResponse({"success": True, "runs": run_list_views(runs), "count": len(runs), "total": total})


@endpoint("operator", body=True)
def create_run(request: Request, body: dict[str, Any]) -> JSONResponse:
    key = request.headers.get("idempotency-key")
    if not key:
        return JSONResponse({"success": True, "pipeline_run": run_view(_create(request, body, None))}, status_code=201)
    fingerprint = _fingerprint(key, body)
    with _serialised(fingerprint):  # look-up and insert as one step: concurrent retries find the first run
        existing = _idempotent_replay(fingerprint)
        if existing is not None:
            return JSONResponse({"success": True, "pipeline_run": run_view(existing)}, status_code=200)
        run = _create(request, body, fingerprint)
    return JSONResponse({"success": True, "pipeline_run": run_view(run)}, status_code=201)


@endpoint("operator", body=True)
def preview_run(request: Request, body: dict[str, Any]) -> JSONResponse:
    """The YAML a POST /runs with this body would run, checked as that request is; nothing is recorded."""
    return JSONResponse({"success": True, "spec": _read_request(request, body).spec.source})


@dataclass
class _RunRequest:
    """A POST /runs body, checked: the pipeline it stands for, its inputs, and the run's other columns."""

    spec: Spec
    inputs: dict[str, Any]
    trigger: str
    fields: dict[str, Any]


def _create(request: Request, body: dict[str, Any], fingerprint: str | None) -> Run:
    wanted = _read_request(request, body)
    return _record(wanted.spec, wanted.inputs, wanted.trigger, {**wanted.fields, "idempotency_key": fingerprint})


def _read_request(request: Request, body: dict[str, Any]) -> _RunRequest:
    """Parse, validate and lint a POST /runs body (400/403/404 as that endpoint documents); records nothing."""
    forms = [name for name in ("steps_to_execute", "pipeline", "spec") if name in body]
    if len(forms) != 1:
        raise validation("give exactly one of steps_to_execute, pipeline or spec")
    fields: dict[str, Any] = {}
    if forms[0] == "steps_to_execute":
        build = parse_build_request(body)
        _check_references(build.git_repository_id, build.registry_id)
        text, name, inputs = build_request_yaml(build, "api-build"), "api-build", {}
        fields.update(steps_to_execute_json=json.dumps(build.steps), output_type=build.output_type,
                      git_repository_id=build.git_repository_id, registry_id=build.registry_id,
                      custom_parameters_json=json.dumps(build.custom_parameters))
    else:
        unknown = sorted(set(body) - {forms[0], "inputs", *(("event", "trigger") if forms[0] == "spec" else ())})
        if unknown:
            raise validation(f"unknown field(s): {', '.join(unknown)}", "unknown_field")
        if forms[0] == "spec":
            fields.update(_push_event(body))
        inputs = {} if body.get("inputs") is None else body["inputs"]
        if not isinstance(inputs, dict):
            raise validation("inputs must be an object")
        if forms[0] == "spec":
            _require_shell_role(request)  # a posted pipeline may hold any run: step
            text, name = _text(body["spec"], "spec"), "<spec>"
        else:
            name = _text(body["pipeline"], "pipeline")
            text = _pipeline_file(name).read_text()
            fields["pipeline_file"] = str(_pipeline_file(name))
    trigger = fields.pop("trigger", "api")
    try:
        spec = load_spec(text, name)
        if not accepts(spec.data.get("on") or {}, trigger):
            raise validation(f"this pipeline does not accept {trigger} runs (its on: has no {trigger})",
                             "trigger_not_accepted")
        resolve_inputs(spec.data.get("inputs") or {}, inputs)  # refused here, so a preview refuses them too
    except DiagnosticError as error:
        raise spec_error(error) from None
    except InputError as error:
        raise validation(str(error), "invalid_input") from None
    return _RunRequest(spec, inputs, trigger, fields)


def _record(spec: Spec, inputs: dict[str, Any], trigger: str, fields: dict[str, Any]) -> Run:
    """The one way the API records a run: POST /runs and reruns alike."""
    run = record_run(spec, inputs, trigger=trigger, **fields)
    queries.append_log_line(run.id, CREATED_LINE)
    return run


def _require_shell_role(request: Request) -> None:
    require(request, "admin")  # run: steps execute shell commands on the host


PUSH_EVENT_KEYS = ("ref", "commit", "before", "repository", "pusher")


def _push_event(body: dict[str, Any]) -> dict[str, Any]:
    """A git hook posting a pipeline it read at a pushed commit may say which push it was (admins only)."""
    if "event" not in body and "trigger" not in body:
        return {}
    trigger, event = body.get("trigger", "push"), body.get("event") or {}
    if trigger not in ("api", "push"):
        raise validation("trigger must be api or push")
    if not isinstance(event, dict) or set(event) - set(PUSH_EVENT_KEYS) or not all(
            isinstance(value, str) and len(value) <= 255 for value in event.values()):
        raise validation(f"event must be an object of strings (≤ 255 characters) with keys among "
                         f"{', '.join(PUSH_EVENT_KEYS)}")
    return {"trigger": trigger, "event": event}


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise validation(f"{name} must be a non-empty string")
    return value


def _pipeline_file(name: str) -> Path:
    folder = settings.pipelines_dir().resolve()
    path = (folder / name).resolve()
    if path.parent != folder or path.suffix not in (".yml", ".yaml") or not path.is_file():
        raise not_found(f"pipeline {name!r}")
    return path


def _check_references(repository_id: int | None, registry_id: int | None) -> None:
    live = catalog.Repository.live().where(catalog.Repository.id == repository_id)
    if repository_id is not None and not live.exists():
        raise not_found(f"repository {repository_id}")
    if registry_id is not None and not catalog.Registry.live().where(catalog.Registry.id == registry_id).exists():
        raise not_found(f"registry {registry_id}")


def _fingerprint(key: str, body: dict[str, Any]) -> str:
    if len(key) > 200:
        raise validation("Idempotency-Key must be at most 200 characters")
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]
    return f"{hashlib.sha256(key.encode()).hexdigest()[:32]}:{digest}"


@contextlib.contextmanager
def _serialised(fingerprint: str) -> Iterator[None]:
    """A transaction no other request with the same Idempotency-Key runs beside: SQLite's BEGIN IMMEDIATE
    serialises all writers; PostgreSQL takes a transaction-level advisory lock on the key."""
    if not isinstance(db.obj, peewee.PostgresqlDatabase):
        with transaction_immediate():
            yield
        return
    lock = int.from_bytes(bytes.fromhex(fingerprint.split(":")[0][:16]), "big", signed=True)
    with db.atomic():
        db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (lock,))
        yield


def _idempotent_replay(fingerprint: str) -> Run | None:
    prefix = fingerprint.split(":")[0] + ":"
    earlier = Run.get_or_none(Run.idempotency_key.startswith(prefix))
    if earlier is None:
        return None
    if earlier.idempotency_key != fingerprint:
        raise ApiError(409, "this Idempotency-Key was used with a different request body", code="idempotency_conflict")
    return earlier


def _run(request: Request) -> Run:
    run = queries.get_run(path_id(request, "run_id", "run"))
    if run is None:
        raise not_found(f"run {request.path_params['run_id']}")
    return run


@endpoint("viewer")
def get_run(request: Request) -> JSONResponse:
    return JSONResponse({"success": True, "pipeline_run": run_view(_run(request))})


@endpoint("viewer")
def get_spec(request: Request) -> Response:
    """The pipeline YAML the run executes (for a build request: the translation of it)."""
    return Response(_run(request).spec_yaml, media_type="application/yaml; charset=utf-8")


@endpoint("operator")
def execute_run(request: Request) -> JSONResponse:
    run = _run(request)
    wait = int_param(request, "wait", default=0, low=0, high=MAX_WAIT_SECONDS)
    if not _queue(request, run.id):
        state = "already queued" if run.status == "pending" else run.status
        raise ApiError(409, f"run {run.id} is {state}", code="not_executable")
    deadline = time.monotonic() + wait
    while wait and time.monotonic() < deadline:
        run = queries.get_run(run.id)
        if run.status in TERMINAL:
            break
        time.sleep(0.1)
    return JSONResponse({"success": True, "execution_result": execution_result(queries.get_run(run.id))})


def _queue(request: Request, run_id: int) -> bool:
    """Queue a pending run and wake this server's workers; False when it is not pending or already queued."""
    if not queue.enqueue(run_id):
        return False
    worker = getattr(request.app.state, "worker", None)
    if worker is not None:
        worker.wake()
    return True


@endpoint("operator")
def rerun(request: Request) -> JSONResponse:
    """A new run of a finished run's pipeline, inputs and build fields, queued at once."""
    earlier = _run(request)
    try:
        spec = load_spec(earlier.spec_yaml, earlier.pipeline_file or earlier.pipeline_name)
    except DiagnosticError as error:  # valid when it was made; a stricter linter since may refuse it
        refused = spec_error(error)
        raise ApiError(409, f"run {earlier.id} cannot run again: {refused.message}", code=refused.code) from None
    if _has_shell_steps(spec):
        _require_shell_role(request)
    if earlier.status not in TERMINAL:
        raise ApiError(409, f"run {earlier.id} is {earlier.status}; re-run it once it has finished",
                       code="run_not_finished")
    if earlier.trigger == "cli" and _reads_secrets(spec):
        # `forgeyard run --secret` values (and FORGEYARD_SECRET_*, --secrets-file) are never stored.
        raise ApiError(409, f"run {earlier.id} was started by forgeyard run and its pipeline reads secrets, which "
                            "are never stored; run it again with forgeyard run and its secrets",
                       code="secrets_not_stored")
    _check_references(earlier.git_repository_id, earlier.registry_id)
    fields = {name: getattr(earlier, name) for name in RERUN_COLUMNS}
    run = _record(spec, earlier.inputs or {}, earlier.trigger, fields)
    _queue(request, run.id)
    return JSONResponse({"success": True, "pipeline_run": run_view(queries.get_run(run.id))}, status_code=201)


# What a rerun keeps besides the spec, inputs and trigger: the build request's fields, the file, the push.
RERUN_COLUMNS = ("pipeline_file", "steps_to_execute_json", "git_repository_id", "output_type", "registry_id",
                 "custom_parameters_json", "event_json")


def _has_shell_steps(spec: Spec) -> bool:
    return any("run" in step for job in spec.data["jobs"].values() for step in job.get("steps") or ())


def _reads_secrets(spec: Spec) -> bool:
    """Whether an expression of the pipeline reads the secrets context."""
    for text in expression_texts(spec.data):
        try:
            if any(reference[0] == "secrets" for reference, _ in reference_offsets(text)):
                return True
        except ExpressionError:
            continue  # validation reports it
    return False


def execution_result(run: Run) -> dict[str, Any]:
    outputs = len(queries.build_outputs(run.id))
    messages = {
        "completed": (True, f"Pipeline completed successfully with {outputs} output(s)"),
        "failed": (False, f"Pipeline failed ({run.error or 'error'})"),
        "cancelled": (False, "Pipeline cancelled"),
        "running": (True, f"Pipeline run {run.id} is running"),
        "pending": (True, f"Pipeline run {run.id} queued"),
    }
    success, message = messages[run.status]
    return {"success": success, "message": message, "status": run.status}


@endpoint("operator")
def cancel_run(request: Request) -> JSONResponse:
    run = _run(request)
    if run.status in TERMINAL:
        raise ApiError(409, f"run {run.id} is already {run.status}", code="not_cancellable")
    queue.request_cancel(run.id)
    worker = getattr(request.app.state, "worker", None)
    if worker is not None:
        worker.cancel(run.id)
    return JSONResponse({"success": True, "pipeline_run": run_view(queries.get_run(run.id))})


@endpoint("viewer")
def get_logs(request: Request) -> StreamingResponse:
    run = _run(request)
    since = int_param(request, "since", default=0, low=0)
    lines = (f"[{format_timestamp(line.timestamp)}] {line.text}\n" for line in queries.iter_log_lines(run.id, since))
    return StreamingResponse(lines, media_type="text/plain; charset=utf-8")


routes = [
    Route("/runs", by_method(GET=list_runs, POST=create_run), methods=["GET", "POST"]),
    Route("/runs/{run_id:int}", get_run, methods=["GET"]),
    Route("/runs/{run_id:int}/spec", get_spec, methods=["GET"]),
    Route("/runs/{run_id:int}/execute", execute_run, methods=["POST"]),
    Route("/runs/{run_id:int}/cancel", cancel_run, methods=["POST"]),
    Route("/runs/{run_id:int}/rerun", rerun, methods=["POST"]),
    Route("/runs/preview", preview_run, methods=["POST"]),
    Route("/runs/{run_id:int}/logs", get_logs, methods=["GET"]),
]
