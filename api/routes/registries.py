"""Stored container registries: list, create, show, update, delete and verify (/v2/ login); credentials write-only."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from api.catalog_views import (
    check_fields,
    check_name_free,
    credential_values,
    delete_kept,
    get_or_404,
    list_response,
    merged,
    registry_view,
    save,
    text,
)
from api.endpoint import by_method, endpoint
from api.errors import validation
from runner.catalog import REGISTRY_TYPES, Registry
from runner.docker import DEFAULT_REGISTRY_HOSTS, check_image_ref, registry_host
from runner.models import Run
from runner.registry_auth import check_registry_host, verify_registry

LOGIN_CREDENTIALS = ("password", "token")
ECR_CREDENTIALS = ("aws_access_key_id", "aws_secret_access_key", "region")
SECRETS = ("password", "token", "aws_access_key_id", "aws_secret_access_key")
FIELDS = ("name", "type", "url", "namespace", "username", *LOGIN_CREDENTIALS, *ECR_CREDENTIALS)
AWS_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")


def _type(body: dict[str, Any], current: str = "generic") -> str:
    kind = body.get("type", current)
    if kind not in REGISTRY_TYPES:
        raise validation(f"type must be one of {', '.join(REGISTRY_TYPES)}")
    return kind


def _url(body: dict[str, Any], kind: str) -> str:
    """host[:port] of the given url, or the type's own host; "" for ECR, whose login names its host."""
    value = text(body, "url", max_length=300, nullable=True)
    if value is None:
        if kind == "generic":
            raise validation("a generic registry needs a url (host[:port])", "missing_field")
        return DEFAULT_REGISTRY_HOSTS.get(kind, "")
    try:
        host = registry_host(value)
        check_registry_host(host)
    except ValueError as error:
        raise validation(str(error), "invalid_registry_url") from None
    return host


def _namespace(body: dict[str, Any]) -> str | None:
    namespace = text(body, "namespace", nullable=True)
    if namespace is not None:
        try:
            check_image_ref(f"registry.invalid/{namespace.strip('/')}/image")
        except ValueError:
            raise validation("namespace must be lower-case path components like acme or acme/team",
                             "invalid_namespace") from None
        namespace = namespace.strip("/")
    return namespace


def _check_credentials(kind: str, username: str | None, credentials: dict[str, str]) -> None:
    foreign = sorted(set(credentials) & set(LOGIN_CREDENTIALS if kind == "ecr" else ECR_CREDENTIALS))
    if foreign:
        needs = "an AWS key pair and region" if kind == "ecr" else "a password or token"
        raise validation(f"{', '.join(foreign)} cannot be used with a {kind} registry: it takes {needs}",
                         "credential_mismatch")
    if kind == "ecr":
        missing = [key for key in ECR_CREDENTIALS if key not in credentials]
        if missing:
            raise validation(f"an ecr registry needs {', '.join(missing)}", "missing_field")
        if not AWS_REGION.fullmatch(credentials["region"]):
            raise validation("region must be an AWS region such as eu-west-1")
        return
    if "password" in credentials and "token" in credentials:
        raise validation("give a password or a token, not both", "credential_mismatch")
    if credentials and not username:
        raise validation("a password or token needs a username", "credential_mismatch")


def _given_credentials(body: dict[str, Any]) -> dict[str, str | None]:
    return credential_values(body, (*LOGIN_CREDENTIALS, *ECR_CREDENTIALS), SECRETS)


@endpoint("viewer")
def list_registries(request: Request) -> JSONResponse:
    return list_response(request, Registry.live(), "registries", lambda rs: [registry_view(r) for r in rs])


@endpoint("admin", body=True)
def create_registry(_request: Request, body: dict[str, Any]) -> JSONResponse:
    check_fields(body, FIELDS, required=("name",))
    name, kind = text(body, "name"), _type(body)
    registry = Registry(name=name, type=kind, url=_url(body, kind), namespace=_namespace(body),
                        username=text(body, "username", nullable=True))
    credentials = merged({}, _given_credentials(body))
    _check_credentials(kind, registry.username, credentials)
    check_name_free(Registry, name, "registry")
    registry.set_credentials(credentials)
    save(registry, "registry", insert=True)
    return JSONResponse({"success": True, "registry": registry_view(registry)}, status_code=201)


@endpoint("viewer")
def get_registry(request: Request) -> JSONResponse:
    registry = get_or_404(Registry, request, "registry_id", "registry")
    return JSONResponse({"success": True, "registry": registry_view(registry)})


@endpoint("admin", body=True)
def update_registry(request: Request, body: dict[str, Any]) -> JSONResponse:
    registry = get_or_404(Registry, request, "registry_id", "registry")
    check_fields(body, FIELDS)
    if "name" in body:
        registry.name = text(body, "name")
        check_name_free(Registry, registry.name, "registry", own_id=registry.id)
    registry.type = _type(body, registry.type)
    if "url" in body:
        registry.url = _url(body, registry.type)
    if "namespace" in body:
        registry.namespace = _namespace(body)
    if "username" in body:
        registry.username = text(body, "username", nullable=True)
    given = _given_credentials(body)
    credentials = merged(registry.credentials(), given)
    _check_credentials(registry.type, registry.username, credentials)
    if given:
        registry.set_credentials(credentials)
    if given or {"type", "url", "username"} & set(body):
        registry.is_verified = False  # what was verified is no longer what is stored
    save(registry, "registry")
    return JSONResponse({"success": True, "registry": registry_view(registry)})


@endpoint("admin")
def delete_registry(request: Request) -> JSONResponse:
    return delete_kept(get_or_404(Registry, request, "registry_id", "registry"), Run.registry_id, "registry")


@endpoint("admin")
def verify(request: Request) -> JSONResponse:
    registry = get_or_404(Registry, request, "registry_id", "registry")
    ok, message = verify_registry(registry)
    Registry.update(is_verified=ok).where(Registry.id == registry.id).execute()
    registry.is_verified = ok
    return JSONResponse({"success": True, "verification": {"ok": ok, "message": message},
                         "registry": registry_view(registry)})


routes = [
    Route("/registries", by_method(GET=list_registries, POST=create_registry), methods=["GET", "POST"]),
    Route("/registries/{registry_id:int}", by_method(GET=get_registry, PATCH=update_registry, DELETE=delete_registry),
          methods=["GET", "PATCH", "DELETE"]),
    Route("/registries/{registry_id:int}/verify", verify, methods=["POST"]),
]
