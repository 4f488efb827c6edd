"""Branding templates: CRUD, image assets (multipart upload checked by content, download), the brand images a
build draws from them (variants), export and import.

An uploaded file's name is never used: assets are stored in the database by template and kind, and are served
back only as attachments.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any

import jsonschema
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.auth import require
from api.catalog_views import (
    check_fields,
    check_name_free,
    get_or_404,
    list_response,
    save,
    template_views,
    text,
)
from api.endpoint import by_method, endpoint
from api.errors import ApiError, not_found, validation
from runner import brandimages
from runner.catalog import ASSET_KINDS, BrandingAsset, BrandingTemplate
from runner.database import db
from runner.openwebui import IMAGE_VARIANTS, ImageVariant
from runner.steps.apply_branding import STEP as APPLY_BRANDING
from runner.steps.apply_branding import source_kind
from runner.timestamps import utcnow

FIELDS = ("name", "app_name", "theme_color", "replacements", "license_exception")
EXPORT_FORMAT = "forgeyard-branding-template"
EXPORT_VERSION = 1
MEDIA_TYPES = {"png": "image/png", "svg": "image/svg+xml"}
# An asset is served for download only: never rendered in our origin (an SVG is a document that could script).
ASSET_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox"}


def _checked(key: str, value: Any, input_name: str) -> Any:
    """`value` validated by apply_branding's own input schema, so a stored template is one the step accepts."""
    schema = APPLY_BRANDING.input_schema["properties"][input_name]
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
    if error is not None:
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path)
        raise validation(f"{key}{where}: {error.message}")
    return value


def _replacements(value: Any) -> list[dict[str, Any]]:
    _checked("replacements", value, "replacements")
    for number, rule in enumerate(value):
        if rule.get("regex"):
            try:
                re.compile(rule["search"]).sub(rule["replace"], "")  # a bad group reference fails here too
            except re.error as error:
                raise validation(f"replacements[{number}]: invalid regular expression ({error})") from None
    return value


def _apply_fields(template: BrandingTemplate, body: dict[str, Any]) -> None:
    if "name" in body:
        template.name = text(body, "name")
    if "app_name" in body:
        template.app_name = _checked("app_name", body["app_name"], "name")
    for key in ("theme_color", "license_exception"):
        if key in body:
            setattr(template, key, None if body[key] is None else _checked(key, body[key], key))
    if "replacements" in body:
        template.replacements = [] if body["replacements"] is None else _replacements(body["replacements"])


def _new_template(body: dict[str, Any]) -> BrandingTemplate:
    check_fields(body, FIELDS, required=("name", "app_name"))
    template = BrandingTemplate()
    _apply_fields(template, body)
    check_name_free(BrandingTemplate, template.name, "branding template")
    return template


def _view(template: BrandingTemplate) -> dict[str, Any]:
    return template_views([template])[0]


@endpoint("viewer")
def list_templates(request: Request) -> JSONResponse:
    return list_response(request, BrandingTemplate.select(), "templates", template_views)


@endpoint("admin", body=True)
def create_template(_request: Request, body: dict[str, Any]) -> JSONResponse:
    template = _new_template(body)
    save(template, "branding template", insert=True)
    return JSONResponse({"success": True, "template": _view(template)}, status_code=201)


@endpoint("viewer")
def get_template(request: Request) -> JSONResponse:
    return JSONResponse({"success": True, "template": _view(_template(request))})


@endpoint("admin", body=True)
def update_template(request: Request, body: dict[str, Any]) -> JSONResponse:
    template = _template(request)
    check_fields(body, FIELDS)
    _apply_fields(template, body)
    check_name_free(BrandingTemplate, template.name, "branding template", own_id=template.id)
    template.updated_at = utcnow()
    save(template, "branding template")
    return JSONResponse({"success": True, "template": _view(template)})


@endpoint("admin")
def delete_template(request: Request) -> JSONResponse:
    template = _template(request)
    with db.atomic():
        BrandingAsset.delete().where(BrandingAsset.template == template).execute()
        template.delete_instance()
    return JSONResponse({"success": True, "deleted": {"id": template.id, "name": template.name}})


def _template(request: Request) -> BrandingTemplate:
    return get_or_404(BrandingTemplate, request, "template_id", "branding template")


# -- assets -----------------------------------------------------------------------------------------------------

def _kind(request: Request) -> str:
    kind = request.path_params["kind"]
    if kind not in ASSET_KINDS:
        raise ApiError(404, f"asset kinds are {', '.join(ASSET_KINDS)}", code="not_found")
    return kind


def _checked_image(kind: str, data: bytes) -> str:
    """The media type of an image Forgeyard accepts for `kind`, judged by its content alone; 413/422 otherwise."""
    if len(data) > brandimages.MAX_INPUT_BYTES:
        raise ApiError(413, f"{kind} is larger than {brandimages.MAX_INPUT_BYTES // (1024 * 1024)} MiB",
                       code="asset_too_large")
    try:
        return MEDIA_TYPES[brandimages.load_source(data, kind).kind]
    except brandimages.ImageRejected as error:
        raise ApiError(422, str(error), code="invalid_image") from None


def _store_asset(template: BrandingTemplate, kind: str, data: bytes) -> None:
    template.set_asset(kind, data, _checked_image(kind, data))
    BrandingTemplate.update(updated_at=utcnow()).where(BrandingTemplate.id == template.id).execute()


async def upload_asset(request: Request) -> JSONResponse:
    """POST multipart/form-data with one file field named `file`."""

    def authorised_template() -> BrandingTemplate:
        require(request, "admin")
        return _template(request)

    template, kind = await run_in_threadpool(authorised_template), _kind(request)
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "multipart/form-data":
        raise ApiError(415, "send the image as multipart/form-data in a file field named file",
                       code="unsupported_media_type")
    async with request.form(max_files=1, max_fields=10) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise validation("send the image in a multipart file field named file", "missing_file")
        data = await upload.read(brandimages.MAX_INPUT_BYTES + 1)
    await run_in_threadpool(_store_asset, template, kind, data)
    return JSONResponse({"success": True, "template": await run_in_threadpool(_view, template)}, status_code=201)


@endpoint("viewer")
def download_asset(request: Request) -> Response:
    template, kind = _template(request), _kind(request)
    asset = BrandingAsset.get_or_none((BrandingAsset.template == template) & (BrandingAsset.kind == kind))
    if asset is None:
        raise not_found(f"{kind} of branding template {template.id}")
    extension = next((ext for ext, media_type in MEDIA_TYPES.items() if media_type == asset.media_type), "bin")
    disposition = f'attachment; filename="{kind}.{extension}"'
    return Response(bytes(asset.content), media_type=asset.media_type,
                    headers={**ASSET_HEADERS, "Content-Disposition": disposition, "ETag": f'"{asset.sha256}"'})


@endpoint("admin")
def delete_asset(request: Request) -> JSONResponse:
    template, kind = _template(request), _kind(request)
    deleted = BrandingAsset.delete().where((BrandingAsset.template == template) & (BrandingAsset.kind == kind))
    if not deleted.execute():
        raise not_found(f"{kind} of branding template {template.id}")
    return JSONResponse({"success": True, "template": _view(template)})


# -- variants: the images apply_branding draws from the template ------------------------------------------------

VARIANT_MEDIA_TYPES = {"png": "image/png", "svg": "image/svg+xml", "ico": "image/vnd.microsoft.icon"}


def _asset_kinds(template: BrandingTemplate) -> set[str]:
    return {row.kind for row in BrandingAsset.select(BrandingAsset.kind).where(BrandingAsset.template == template)}


def _variant_media_type(variant: ImageVariant) -> str:
    return VARIANT_MEDIA_TYPES[variant.name.rsplit(".", 1)[-1]]


@endpoint("viewer")
def list_variants(request: Request) -> JSONResponse:
    """Every brand image a build with this template writes (none without a logo, which they all fall back to)."""
    template = _template(request)
    kinds = _asset_kinds(template)
    variants = [{"name": variant.name, "width": variant.size[0], "height": variant.size[1],
                 "media_type": _variant_media_type(variant), "source": source_kind(variant, kinds),
                 "url": f"/api/pipelines/templates/{template.id}/variants/{variant.name}"}
                for variant in IMAGE_VARIANTS.values()] if "logo" in kinds else []
    return JSONResponse({"success": True, "variants": variants, "count": len(variants)})


@endpoint("viewer")
def get_variant(request: Request) -> Response:
    """One brand image as apply_branding writes it (drawn on each request: nothing is kept)."""
    template = _template(request)
    variant = IMAGE_VARIANTS.get(request.path_params["name"])
    if variant is None:
        raise ApiError(404, f"variants are {', '.join(IMAGE_VARIANTS)}", code="not_found")
    kinds = _asset_kinds(template)
    kind = source_kind(variant, kinds) if "logo" in kinds else None
    data = template.asset(kind) if kind else None  # None too when an admin removed it meanwhile
    if data is None:
        raise ApiError(404, f"branding template {template.id} has no logo to draw its images from", code="not_found")
    try:
        source = brandimages.load_source(data, kind)
    except brandimages.ImageRejected as error:  # stored before a stricter check: a build would refuse it too
        raise ApiError(422, str(error), code="invalid_image") from None
    return Response(brandimages.render(source, variant.name, variant.size), media_type=_variant_media_type(variant),
                    headers={**ASSET_HEADERS, "Content-Disposition": f'attachment; filename="{variant.name}"'})


# -- export and import ------------------------------------------------------------------------------------------

@endpoint("admin")
def export_template(request: Request) -> JSONResponse:
    template = _template(request)
    assets = {asset.kind: {"media_type": asset.media_type, "sha256": asset.sha256,
                           "content_base64": base64.b64encode(bytes(asset.content)).decode()}
              for asset in BrandingAsset.select().where(BrandingAsset.template == template)}
    fields = {"name": template.name, "app_name": template.app_name, "theme_color": template.theme_color,
              "replacements": template.replacements or [], "license_exception": template.license_exception}
    document = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "template": fields, "assets": assets}
    return JSONResponse(document, headers={
        "Content-Disposition": f'attachment; filename="branding-template-{template.id}.json"'})


def _imported_assets(assets: Any) -> dict[str, tuple[bytes, str]]:
    """kind → (content, media type) of an export's assets, each checked like an upload."""
    if not isinstance(assets, dict):
        raise validation("assets must be an object of kind → asset", "invalid_export")
    unknown = sorted(set(assets) - set(ASSET_KINDS))
    if unknown:
        raise validation(f"unknown asset kind(s): {', '.join(unknown)}; kinds: {', '.join(ASSET_KINDS)}",
                         "invalid_export")
    contents = {}
    for kind, asset in assets.items():
        if not isinstance(asset, dict) or not isinstance(asset.get("content_base64"), str):
            raise validation(f"assets.{kind} needs content_base64", "invalid_export")
        try:
            data = base64.b64decode(asset["content_base64"], validate=True)
        except (binascii.Error, ValueError):
            raise validation(f"assets.{kind}.content_base64 is not base64", "invalid_export") from None
        if asset.get("sha256") not in (None, hashlib.sha256(data).hexdigest()):
            raise validation(f"assets.{kind} does not match its sha256: the file was damaged", "invalid_export")
        contents[kind] = data, _checked_image(kind, data)  # by content, whatever media_type the document says
    return contents


@endpoint("admin", body=True)
def import_template(_request: Request, document: dict[str, Any]) -> JSONResponse:
    check_fields(document, ("format", "version", "template", "assets"), required=("format", "template"))
    if document["format"] != EXPORT_FORMAT or document.get("version", EXPORT_VERSION) != EXPORT_VERSION:
        raise validation(f"not a {EXPORT_FORMAT} document of version {EXPORT_VERSION}", "invalid_export")
    if not isinstance(document["template"], dict):
        raise validation("template must be an object", "invalid_export")
    template = _new_template(document["template"])
    assets = _imported_assets({} if document.get("assets") is None else document["assets"])
    with db.atomic():  # all of it or nothing
        save(template, "branding template", insert=True)
        for kind, (data, media_type) in assets.items():
            template.set_asset(kind, data, media_type)
    return JSONResponse({"success": True, "template": _view(template)}, status_code=201)


routes = [
    Route("/templates", by_method(GET=list_templates, POST=create_template), methods=["GET", "POST"]),
    Route("/templates/import", import_template, methods=["POST"]),
    Route("/templates/{template_id:int}", by_method(GET=get_template, PATCH=update_template, DELETE=delete_template),
          methods=["GET", "PATCH", "DELETE"]),
    Route("/templates/{template_id:int}/export", export_template, methods=["GET"]),
    Route("/templates/{template_id:int}/assets/{kind}",
          by_method(GET=download_asset, POST=upload_asset, DELETE=delete_asset), methods=["GET", "POST", "DELETE"]),
    Route("/templates/{template_id:int}/variants", list_variants, methods=["GET"]),
    Route("/templates/{template_id:int}/variants/{name}", get_variant, methods=["GET"]),
]
