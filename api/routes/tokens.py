"""API tokens: any token reads its own record; admins list (never a token or its hash), create (shown once), revoke."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from api.auth import require
from api.catalog_views import check_fields, get_or_404, list_response, text, token_view
from api.endpoint import by_method, endpoint
from api.errors import ApiError, validation
from runner.database import db, peewee, transaction_immediate
from runner.timestamps import utcnow
from runner.tokens import ROLES, ApiToken, create_token


@endpoint("viewer")
def me(request: Request) -> JSONResponse:
    """The record of the token this request carries: who is signed in, with which role."""
    return JSONResponse({"success": True, "api_token": token_view(require(request, "viewer"))})


@endpoint("admin")
def list_tokens(request: Request) -> JSONResponse:
    return list_response(request, ApiToken.select(), "tokens", lambda ts: [token_view(t) for t in ts])


@endpoint("admin", body=True)
def create(_request: Request, body: dict[str, Any]) -> JSONResponse:
    check_fields(body, ("name", "role"), required=("name", "role"))
    name = text(body, "name")
    if body["role"] not in ROLES:
        raise validation(f"role must be one of {', '.join(ROLES)}")
    token, record = create_token(name, body["role"])
    return JSONResponse({"success": True, "token": token, "api_token": token_view(record),
                         "message": "store this token now: it is shown only this once"}, status_code=201)


@endpoint("admin")
def revoke(request: Request) -> JSONResponse:
    with transaction_immediate():  # two admins revoking each other at once must not leave no admin
        token = get_or_404(ApiToken, request, "token_id", "token")
        if token.revoked_at is not None:
            raise ApiError(409, f"token {token.id} is already revoked", code="already_revoked")
        live_admins = ApiToken.select(ApiToken.id).where((ApiToken.role == "admin") & ApiToken.revoked_at.is_null())
        if isinstance(db.obj, peewee.PostgresqlDatabase):
            live_admins = live_admins.for_update()  # SQLite's BEGIN IMMEDIATE already serialises this
        if token.role == "admin" and len(list(live_admins)) <= 1:
            raise ApiError(409, "this is the last admin token; create another admin token before revoking it",
                           code="last_admin")
        token.revoked_at = utcnow()
        token.save()
    return JSONResponse({"success": True, "api_token": token_view(token)})


routes = [
    Route("/tokens", by_method(GET=list_tokens, POST=create), methods=["GET", "POST"]),
    Route("/tokens/me", me, methods=["GET"]),
    Route("/tokens/{token_id:int}", revoke, methods=["DELETE"]),
]
