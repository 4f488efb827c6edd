"""Request body size and encoding, and rate limits per token or client address: middleware in the API error shape."""

from __future__ import annotations

import math
import os
import re
import threading
import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import bearer_token
from api.errors import error_response
from runner.tokens import verify_token

# The dashboard's static files: no data, no token, and a page load fetches a dozen of them.
DASHBOARD_PREFIX = "/ui/"
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024  # branding uploads included; pipelines are ≤ 1 MiB
_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


class _BodyTooLarge(Exception):
    pass


# The connection is closed after these answers: the body was not read, and reading on would only discard it.
_CLOSE = {"Connection": "close"}


class BodyLimitMiddleware:
    """413 once the streamed body passes the limit, whatever `Content-Length` said (or did not say).

    A compressed body (`Content-Encoding`) is refused unread with 415, as RFC 7694 has it: the API never
    inflates a body, so a small gzip bomb cannot expand past the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"")
        has_body = b"transfer-encoding" in headers or declared not in (b"", b"0")
        if has_body and headers.get(b"content-encoding", b"identity").strip().lower() != b"identity":
            response = error_response(415, "compressed request bodies (Content-Encoding) are not accepted; send the "
                                      "body uncompressed", code="unsupported_content_encoding",
                                      headers={"Accept-Encoding": "identity", **_CLOSE})
            return await response(scope, receive, send)
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(scope, receive, send)
        received, started = 0, False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"the request body is larger than {self.max_bytes} bytes"
        await error_response(413, message, code="payload_too_large", headers=_CLOSE)(scope, receive, send)


def parse_rate(text: str) -> tuple[int, int]:
    """'100/minute' → (100, 60)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(second|minute|hour|day)\s*", text or "")
    if not match:
        raise ValueError("FORGEYARD_RATE_LIMIT must look like 100/minute (per second, minute, hour or day)")
    return int(match.group(1)), _PERIODS[match.group(2)]


class RateLimitMiddleware:
    """A fixed window per valid token, and one per client address for every request without a valid token (so
    rotating made-up tokens gains nothing); headers on every HTTP response, WebSocket handshakes counted too."""

    def __init__(self, app: ASGIApp, rate: str | None = None):
        self.app = app
        self.limit, self.period = parse_rate(rate or os.environ.get("FORGEYARD_RATE_LIMIT") or "100/minute")
        self._windows: dict[str, tuple[int, int]] = {}  # key → (window start, requests in it)
        self._lock = threading.Lock()

    def _count(self, key: str) -> tuple[int, int]:
        now = time.time()
        start = int(now // self.period * self.period)
        with self._lock:
            if len(self._windows) > 10_000:  # forget old windows so memory stays bounded
                self._windows = {k: v for k, v in self._windows.items() if v[0] == start}
            window_start, used = self._windows.get(key, (start, 0))
            used = used + 1 if window_start == start else 1
            self._windows[key] = (start, used)
        return used, start + self.period

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"].startswith(DASHBOARD_PREFIX):
            return await self.app(scope, receive, send)
        used, reset = self._count(await _client_key(scope))
        headers = [(b"x-ratelimit-limit", str(self.limit).encode()),
                   (b"x-ratelimit-remaining", str(max(0, self.limit - used)).encode()),
                   (b"x-ratelimit-reset", str(reset).encode())]
        if used > self.limit:
            retry = max(1, math.ceil(reset - time.time()))
            response = error_response(429, f"more than {self.limit} requests in {self.period} s; retry in {retry} s",
                                      code="rate_limited", headers={"Retry-After": str(retry)})
            response.raw_headers.extend(headers)
            if scope["type"] == "websocket":
                return await _refuse_handshake(scope, send, response)
            return await response(scope, receive, send)
        if scope["type"] == "websocket":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _client_key(scope: Scope) -> str:
    """`token:ID` for a valid token, else `address:IP`. The token found is kept for api.auth, which reads it back
    instead of looking it up again."""
    connection = HTTPConnection(scope)
    token = bearer_token(connection)
    record = await run_in_threadpool(verify_token, token) if token else None
    if record is not None:
        connection.state.api_token = record
        return f"token:{record.id}"
    client = scope.get("client") or ("unknown", 0)
    return f"address:{client[0]}"


async def _refuse_handshake(scope: Scope, send: Send, response: JSONResponse) -> None:
    """Answer a WebSocket handshake with `response` where the server can send one (ASGI's websocket.http.response
    extension), else close it, which the server answers with 403; never upgraded either way."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        return await send({"type": "websocket.close", "code": 1008})
    await send({"type": "websocket.http.response.start", "status": response.status_code,
                "headers": response.raw_headers})
    await send({"type": "websocket.http.response.body", "body": response.body})
