"""Who is asking: bearer tokens checked against their stored hash, and the role each action needs."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from api.errors import ApiError
from runner.tokens import ApiToken, verify_token

UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="forgeyard"'}


def bearer_token(connection: HTTPConnection) -> str | None:
    """The token of an `Authorization: Bearer` header, or of `?token=` on a WebSocket."""
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if connection.scope["type"] == "websocket":
        return connection.query_params.get("token")
    return None


def authenticate(connection: HTTPConnection) -> ApiToken:
    cached = getattr(connection.state, "api_token", None)
    if cached is not None:
        return cached
    token = bearer_token(connection)
    record = verify_token(token) if token else None
    if record is None:
        message = "a valid API token is required (Authorization: Bearer TOKEN)" if token is None else \
            "the API token is not valid"
        raise ApiError(401, message, code="unauthorized", headers=UNAUTHORIZED_HEADERS)
    connection.state.api_token = record
    return record


def require(connection: HTTPConnection, role: str) -> ApiToken:
    """The caller's token if its role allows `role` (viewer < operator < admin); 401 or 403 otherwise."""
    record = authenticate(connection)
    if not record.allows(role):
        raise ApiError(403, f"this action needs the {role} role; your token is {record.role}", code="forbidden")
    return record
