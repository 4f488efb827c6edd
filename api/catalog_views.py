"""Response shapes of the catalog resources and the request checks their routes share; no credential ever leaves.

Views list their fields one by one (never a model's __data__), so a column added later stays private until it is
named here; credentials show only as `has_credentials`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from api.endpoint import int_param
from api.errors import ApiError, not_found, validation
from api.views import iso
from runner import catalog
from runner.database import db, peewee
from runner.masking import unmaskable_reason
from runner.models import Run
from runner.tokens import ApiToken

MAX_ID = 2**63 - 1  # larger path ids cannot exist (and SQLite would refuse to compare them)
MAX_PAGE = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# -- views ------------------------------------------------------------------------------------------------------

def repository_view(repository: catalog.Repository) -> dict[str, Any]:
    return {"id": repository.id, "name": repository.name, "url": repository.url, "type": repository.type,
            "is_verified": repository.is_verified, "default_ref": repository.default_ref,
            "created_at": iso(repository.created_at), "last_used_at": iso(repository.last_used_at),
            "has_credentials": repository.has_credentials}


def registry_view(registry: catalog.Registry) -> dict[str, Any]:
    return {"id": registry.id, "name": registry.name, "type": registry.type, "url": registry.url,
            "namespace": registry.namespace, "username": registry.username, "is_verified": registry.is_verified,
            "created_at": iso(registry.created_at), "has_credentials": registry.has_credentials}


def template_views(templates: Iterable[catalog.BrandingTemplate]) -> list[dict[str, Any]]:
    """Templates with a summary of their assets (one query for all of them; the bytes are never read here)."""
    templates = list(templates)
    Asset = catalog.BrandingAsset
    rows = (Asset.select(Asset.template, Asset.kind, Asset.media_type, Asset.sha256,
                         peewee.fn.LENGTH(Asset.content).alias("size"))
            .where(Asset.template.in_([t.id for t in templates])).order_by(Asset.kind)) if templates else []
    assets: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        assets.setdefault(row.template_id, []).append({
            "kind": row.kind, "media_type": row.media_type, "sha256": row.sha256, "size": row.size,
            "url": f"/api/pipelines/templates/{row.template_id}/assets/{row.kind}"})
    return [{"id": t.id, "name": t.name, "app_name": t.app_name, "theme_color": t.theme_color,
             "replacements": t.replacements or [], "license_exception": t.license_exception,
             "created_at": iso(t.created_at), "updated_at": iso(t.updated_at), "assets": assets.get(t.id, [])}
            for t in templates]


def preset_view(preset: catalog.ConfigPreset) -> dict[str, Any]:
    return {"id": preset.id, "name": preset.name, "settings": preset.settings or {},
            "created_at": iso(preset.created_at)}


def token_view(token: ApiToken) -> dict[str, Any]:
    return {"id": token.id, "name": token.name, "role": token.role, "created_at": iso(token.created_at),
            "last_used_at": iso(token.last_used_at), "revoked": token.revoked_at is not None,
            "revoked_at": iso(token.revoked_at)}


def list_response(request: Request, query: peewee.ModelSelect, key: str,
                  views: Callable[[list[Any]], list[dict[str, Any]]]) -> JSONResponse:
    """`{"success": true, key: [...], "count": n, "total": all}`, oldest first, paged by ?limit= and ?offset=."""
    limit = int_param(request, "limit", default=MAX_PAGE, low=1, high=MAX_PAGE)
    offset = int_param(request, "offset", default=0, low=0, high=MAX_ID)
    records = list(query.order_by(query.model.id).limit(limit).offset(offset))
    items = views(records)
    return JSONResponse({"success": True, key: items, "count": len(items), "total": query.count()})


# -- request checks ---------------------------------------------------------------------------------------------

def check_fields(body: dict[str, Any], allowed: Iterable[str], *, required: Iterable[str] = ()) -> None:
    """400 naming every field that is not `allowed` (read-only ones such as id or is_verified included)."""
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise validation(f"unknown or read-only field(s): {', '.join(unknown)}; accepted: "
                         f"{', '.join(sorted(allowed))}", "unknown_field")
    missing = [name for name in required if body.get(name) in (None, "")]
    if missing:
        raise validation(f"missing required field(s): {', '.join(missing)}", "missing_field")


def text(body: dict[str, Any], key: str, *, max_length: int = 200, nullable: bool = False) -> str | None:
    """A one-line string field (stripped); None when absent and `nullable`."""
    value = body.get(key)
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not value.strip():
        raise validation(f"{key} must be a non-empty string" + (" or null" if nullable else ""))
    if len(value) > max_length or _CONTROL.search(value):
        raise validation(f"{key} must be one line of at most {max_length} characters")
    return value.strip()


def credential_values(body: dict[str, Any], fields: Iterable[str], secrets: Iterable[str],
                      multiline: Iterable[str] = ()) -> dict[str, str | None]:
    """The credential fields present in `body` (None: remove it). Messages name fields, never values.

    A secret too short to mask, or one spanning lines where it should not, is refused (422): logs could otherwise
    show it, or masking it would blank ordinary text. Only `multiline` fields (a PEM key, known_hosts) span lines.
    """
    given: dict[str, str | None] = {}
    for key in fields:
        if key not in body:
            continue
        value = body[key]
        if value is None or value == "":
            given[key] = None
            continue
        if not isinstance(value, str) or len(value) > 16384:
            raise validation(f"{key} must be a string of at most 16384 characters")
        one_line = key not in multiline
        value = value.strip() if one_line else value  # a pasted token often ends with a newline
        reason = unmaskable_reason(value, multiline=not one_line) if key in secrets else None
        if reason:
            raise ApiError(422, f"{key} could not be masked in logs reliably: {reason}", code="unmaskable_secret")
        if one_line and _CONTROL.search(value):
            raise validation(f"{key} must be one line without control characters")
        given[key] = value
    return given


def merged(stored: dict[str, str], given: dict[str, str | None]) -> dict[str, str]:
    """Stored credentials with `given` applied: a value replaces, None removes."""
    return {key: value for key, value in {**stored, **given}.items() if value}


def get_or_404(model: type[catalog.CatalogRecord] | type[ApiToken], request: Request, param: str, noun: str):
    record_id = request.path_params[param]
    query = model.live() if issubclass(model, catalog.WithCredentials) else model.select()
    record = query.where(model.id == record_id).first() if record_id <= MAX_ID else None
    if record is None:
        raise not_found(f"{noun} {record_id}")
    return record


def check_name_free(model: type[catalog.CatalogRecord], name: str, noun: str, *, own_id: int | None = None) -> None:
    clash = model.get_or_none(model.name == name)
    if clash is not None and clash.id != own_id:
        raise ApiError(409, f"a {noun} named {name!r} already exists (id {clash.id})", code="name_exists")


def save(record: catalog.CatalogRecord, noun: str, *, insert: bool = False) -> None:
    """Save `record`; a name taken meanwhile by another request is a 409, not a 500."""
    try:
        with db.atomic():
            record.save(force_insert=insert)
    except peewee.IntegrityError:
        raise ApiError(409, f"a {noun} named {record.name!r} already exists", code="name_exists") from None


def delete_kept(record: catalog.WithCredentials, run_column: peewee.Field, noun: str) -> JSONResponse:
    """DELETE of a repository or registry: refused while a run uses it, else marked deleted (never removed)."""
    refuse_if_in_use(run_column, record.id, noun)
    deleted = {"id": record.id, "name": record.name}
    record.mark_deleted()
    return JSONResponse({"success": True, "deleted": deleted})


def refuse_if_in_use(column: peewee.Field, record_id: int, noun: str) -> None:
    """409 while a queued or running run uses the record: it would fail, or pick up a later record given the same
    id. Finished runs stay readable after a delete (api.views says the record was deleted)."""
    active = Run.select().where((column == record_id) & (
        (Run.status == "running") | ((Run.status == "pending") & Run.queued_at.is_null(False))))
    if active.exists():
        raise ApiError(409, f"{noun} {record_id} is used by a queued or running run; cancel it or wait for it",
                       code="in_use")
