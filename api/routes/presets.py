"""Configuration presets (named sets of Open WebUI settings): list, create, show, update, delete; no secrets kept."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from api.catalog_views import check_fields, check_name_free, get_or_404, list_response, preset_view, save, text
from api.endpoint import by_method, endpoint
from api.errors import ApiError, validation
from runner import openwebui
from runner.catalog import ConfigPreset

FIELDS = ("name", "settings")


def _settings(value: Any) -> dict[str, Any]:
    """The settings as given, once every key is known and every value is one apply_config accepts.

    A preset is stored in plain text and shown to viewers, so a secret setting is refused: it belongs in the
    run's settings (from a secret), not in a shared preset.
    """
    if not isinstance(value, dict):
        raise validation("settings must be an object of setting name → value")
    unknown = [name for name in value if name not in openwebui.SETTINGS]
    if unknown:
        hints = [f"{name} (did you mean {hint}?)" if (hint := openwebui.suggest_setting(name)) else name
                 for name in unknown]
        raise validation(f"unknown setting(s): {', '.join(hints)}", "unknown_setting")
    secret = sorted(name for name in value if openwebui.looks_secret(name))
    if secret:
        raise ApiError(422, f"{', '.join(secret)} hold(s) secrets; presets are stored unencrypted, so pass secrets "
                       "with the run instead", code="secret_setting")
    problems = []
    for name, item in value.items():
        try:
            openwebui.normalize_setting(name, item)
        except ValueError as error:
            problems.append(str(error))
    if problems:
        raise validation("; ".join(problems), "invalid_setting")
    return value


@endpoint("viewer")
def list_presets(request: Request) -> JSONResponse:
    return list_response(request, ConfigPreset.select(), "presets", lambda ps: [preset_view(p) for p in ps])


@endpoint("admin", body=True)
def create_preset(_request: Request, body: dict[str, Any]) -> JSONResponse:
    check_fields(body, FIELDS, required=("name",))
    name = text(body, "name")
    preset = ConfigPreset(name=name, settings=_settings(body.get("settings", {})))
    check_name_free(ConfigPreset, name, "configuration preset")
    save(preset, "configuration preset", insert=True)
    return JSONResponse({"success": True, "preset": preset_view(preset)}, status_code=201)


@endpoint("viewer")
def get_preset(request: Request) -> JSONResponse:
    preset = get_or_404(ConfigPreset, request, "preset_id", "configuration preset")
    return JSONResponse({"success": True, "preset": preset_view(preset)})


@endpoint("admin", body=True)
def update_preset(request: Request, body: dict[str, Any]) -> JSONResponse:
    preset = get_or_404(ConfigPreset, request, "preset_id", "configuration preset")
    check_fields(body, FIELDS)
    if "name" in body:
        preset.name = text(body, "name")
        check_name_free(ConfigPreset, preset.name, "configuration preset", own_id=preset.id)
    if "settings" in body:
        preset.settings = _settings(body["settings"])  # the whole map: a key left out is removed
    save(preset, "configuration preset")
    return JSONResponse({"success": True, "preset": preset_view(preset)})


@endpoint("admin")
def delete_preset(request: Request) -> JSONResponse:
    preset = get_or_404(ConfigPreset, request, "preset_id", "configuration preset")
    preset.delete_instance()
    return JSONResponse({"success": True, "deleted": {"id": preset.id, "name": preset.name}})


routes = [
    Route("/presets", by_method(GET=list_presets, POST=create_preset), methods=["GET", "POST"]),
    Route("/presets/{preset_id:int}", by_method(GET=get_preset, PATCH=update_preset, DELETE=delete_preset),
          methods=["GET", "PATCH", "DELETE"]),
]
