"""Who is asking: bearer tokens checked against their stored hash, and the role each action needs."""

from __future__ import annotations

import logging
import os
import re
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from api.errors import ApiError
from runner.tokens import ApiToken, verify_token

UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="forgeyard"'}
# A browser cannot set headers on a WebSocket: it offers the token as a subprotocol beside this one, which the
# server picks (RFC 6455 wants one offered protocol chosen), so the token is never echoed back.
WS_SUBPROTOCOL = "forgeyard"
WS_TOKEN_PREFIX = "bearer."


def bearer_token(connection: HTTPConnection) -> str | None:
    """The token of an `Authorization: Bearer` header; on a WebSocket also of a `bearer.TOKEN` subprotocol or of
    `?token=`."""
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if connection.scope["type"] != "websocket":
        return None
    offered = [p for p in connection.scope.get("subprotocols", ()) if p.startswith(WS_TOKEN_PREFIX)]
    if offered:
        return offered[0][len(WS_TOKEN_PREFIX):]
    return connection.query_params.get("token")


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


def origin_allowed(connection: HTTPConnection) -> bool:
    """Whether a WebSocket handshake may come from its `Origin`: none (not a browser), the server's own (the Host
    it was asked for), or one listed in FORGEYARD_ALLOWED_ORIGINS (comma-separated, e.g. https://dash.example).

    Browsers send any site's cookies with a cross-site WebSocket upgrade and never enforce CORS on it, so this is
    what stops a page elsewhere from reading runs the day a cookie can authenticate (RFC 6455 §10.2).
    """
    origin = connection.headers.get("origin")
    if origin is None:
        return True
    origin = origin.strip().rstrip("/").lower()
    listed = os.environ.get("FORGEYARD_ALLOWED_ORIGINS", "").split(",")
    if origin in {item.strip().rstrip("/").lower() for item in listed if item.strip()}:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc == connection.headers.get("host", "").lower()


class _HideQueryTokens(logging.Filter):
    """uvicorn logs request paths with their query (at DEBUG=true): a `?token=` value becomes ***."""

    _TOKEN = re.compile(r"([?&]token=)[^&\s\"]*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._TOKEN.sub(r"\1***", arg) if isinstance(arg, str) else arg for arg in record.args)
        return True


def hide_query_tokens_in_logs() -> None:
    """Keep `?token=` values (the WebSocket's URL form of a token) out of uvicorn's access and error logs."""
    for name in ("uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).addFilter(_HideQueryTokens())
