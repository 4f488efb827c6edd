"""Stored git repositories: list, create, show, update, delete and verify (git ls-remote); credentials write-only."""

from __future__ import annotations

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
    repository_view,
    save,
    text,
)
from api.endpoint import by_method, endpoint
from api.errors import validation
from runner import git
from runner.catalog import REPOSITORY_TYPES, Repository
from runner.models import Run

HTTPS_CREDENTIALS = ("token", "username", "password")
SSH_CREDENTIALS = ("ssh_private_key", "known_hosts")
SECRETS = ("token", "password", "ssh_private_key")
FIELDS = ("name", "url", "type", "default_ref", *HTTPS_CREDENTIALS, *SSH_CREDENTIALS)
VERIFY_TIMEOUT_SECONDS = 30.0
MAX_URL_LENGTH = 2048


def _url(body: dict[str, Any]) -> str:
    """The `url` field as sent: the URL policy judges it whole (whitespace and control characters included)."""
    url = body.get("url")
    if not isinstance(url, str):
        raise validation("url must be a non-empty string")
    if len(url) > MAX_URL_LENGTH:
        raise validation(f"url must be at most {MAX_URL_LENGTH} characters", "invalid_repo_url")
    return url


def _url_type(url: str, requested: Any) -> str:
    """The repository type the URL implies (ssh, else https); 400 when it breaks the URL policy or `requested`.

    A host name is resolved: one that points at a loopback, private or link-local address is refused.
    """
    try:
        kind = "ssh" if git.check_addresses(git.parse_repo_url(url)).kind == "ssh" else "https"
    except git.PolicyError as error:
        raise validation(str(error), error.code) from None
    if requested is not None and requested not in REPOSITORY_TYPES:
        raise validation(f"type must be one of {', '.join(REPOSITORY_TYPES)}")
    if requested not in (None, kind):
        raise validation(f"type {requested} does not match the URL, which is an {kind} URL", "type_mismatch")
    return kind


def _default_ref(body: dict[str, Any]) -> str | None:
    """The `default_ref` field as sent (null: none); the ref policy judges it whole, as it does a run's ref."""
    ref = body.get("default_ref")
    if ref is None:
        return None
    if not isinstance(ref, str):
        raise validation("default_ref must be a string or null")
    try:
        return git.check_ref(ref)
    except git.PolicyError as error:
        raise validation(f"default_ref: {error}", error.code) from None


def _check_credentials(kind: str, credentials: dict[str, str]) -> None:
    foreign = sorted(set(credentials) & set(SSH_CREDENTIALS if kind == "https" else HTTPS_CREDENTIALS))
    if foreign:
        raise validation(f"{', '.join(foreign)} cannot be used with an {kind} repository", "credential_mismatch")
    if "token" in credentials and "password" in credentials:
        raise validation("give a token or a username and password, not both", "credential_mismatch")
    if "username" in credentials and not ({"token", "password"} & set(credentials)):
        raise validation("username needs a token or a password", "credential_mismatch")
    if "password" in credentials and "username" not in credentials:
        raise validation("password needs a username", "credential_mismatch")
    key = credentials.get("ssh_private_key")
    if key is not None and "PRIVATE KEY-----" not in key:
        raise validation("ssh_private_key must be a private key in OpenSSH or PEM format", "invalid_ssh_key")


def _given_credentials(body: dict[str, Any]) -> dict[str, str | None]:
    return credential_values(body, (*HTTPS_CREDENTIALS, *SSH_CREDENTIALS), SECRETS, multiline=SSH_CREDENTIALS)


@endpoint("viewer")
def list_repositories(request: Request) -> JSONResponse:
    return list_response(request, Repository.live(), "repositories", lambda rs: [repository_view(r) for r in rs])


@endpoint("admin", body=True)
def create_repository(_request: Request, body: dict[str, Any]) -> JSONResponse:
    check_fields(body, FIELDS, required=("name", "url"))
    name, url = text(body, "name"), _url(body)
    kind = _url_type(url, body.get("type"))
    credentials = merged({}, _given_credentials(body))
    _check_credentials(kind, credentials)
    check_name_free(Repository, name, "repository")
    repository = Repository(name=name, url=url, type=kind, default_ref=_default_ref(body))
    repository.set_credentials(credentials)
    save(repository, "repository", insert=True)
    return JSONResponse({"success": True, "repository": repository_view(repository)}, status_code=201)


@endpoint("viewer")
def get_repository(request: Request) -> JSONResponse:
    repository = get_or_404(Repository, request, "repository_id", "repository")
    return JSONResponse({"success": True, "repository": repository_view(repository)})


@endpoint("admin", body=True)
def update_repository(request: Request, body: dict[str, Any]) -> JSONResponse:
    repository = get_or_404(Repository, request, "repository_id", "repository")
    check_fields(body, FIELDS)
    if "name" in body:
        repository.name = text(body, "name")
        check_name_free(Repository, repository.name, "repository", own_id=repository.id)
    if "url" in body or "type" in body:
        url = _url(body) if "url" in body else repository.url
        repository.type = _url_type(url, body.get("type"))
        repository.url = url
    if "default_ref" in body:
        repository.default_ref = _default_ref(body)
    given = _given_credentials(body)
    credentials = merged(repository.credentials(), given) if given else repository.credentials()
    _check_credentials(repository.type, credentials)
    if given:
        repository.set_credentials(credentials)
    if given or "url" in body:
        repository.is_verified = False  # what was verified is no longer what is stored
    save(repository, "repository")
    return JSONResponse({"success": True, "repository": repository_view(repository)})


@endpoint("admin")
def delete_repository(request: Request) -> JSONResponse:
    repository = get_or_404(Repository, request, "repository_id", "repository")
    return delete_kept(repository, Run.git_repository_id, "repository")


@endpoint("admin")
def verify_repository(request: Request) -> JSONResponse:
    repository = get_or_404(Repository, request, "repository_id", "repository")
    try:
        refs = git.ls_remote(repository.url, repository.credentials(), timeout=VERIFY_TIMEOUT_SECONDS)
        ok, message = True, f"git ls-remote succeeded: {len(refs)} ref(s)"
    except (git.GitError, ValueError) as error:  # a fixed verdict or the URL policy: never git's raw output
        ok, message = False, f"git ls-remote failed: {error}"
    Repository.update(is_verified=ok).where(Repository.id == repository.id).execute()
    repository.is_verified = ok
    return JSONResponse({"success": True, "verification": {"ok": ok, "message": message},
                         "repository": repository_view(repository)})


routes = [
    Route("/repositories", by_method(GET=list_repositories, POST=create_repository), methods=["GET", "POST"]),
    Route("/repositories/{repository_id:int}",
          by_method(GET=get_repository, PATCH=update_repository, DELETE=delete_repository),
          methods=["GET", "PATCH", "DELETE"]),
    Route("/repositories/{repository_id:int}/verify", verify_repository, methods=["POST"]),
]
