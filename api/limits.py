"""Request body size and per-token rate limits, as ASGI middleware answering in the API's error shape."""

from __future__ import annotations

import hashlib
import math
import os
import re
import threading
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024  # branding uploads included; pipelines are ≤ 1 MiB
_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


class _BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """413 once the streamed body passes the limit, whatever `Content-Length` said (or did not say)."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
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
        await error_response(413, message, code="payload_too_large")(scope, receive, send)


def parse_rate(text: str) -> tuple[int, int]:
    """'100/minute' → (100, 60)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(second|minute|hour|day)\s*", text or "")
    if not match:
        raise ValueError("FORGEYARD_RATE_LIMIT must look like 100/minute (per second, minute, hour or day)")
    return int(match.group(1)), _PERIODS[match.group(2)]


class RateLimitMiddleware:
    """A fixed window per token (per client address without one); headers on every HTTP response."""

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
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            return await self.app(scope, receive, send)
        used, reset = self._count(_client_key(scope))
        headers = [(b"x-ratelimit-limit", str(self.limit).encode()),
                   (b"x-ratelimit-remaining", str(max(0, self.limit - used)).encode()),
                   (b"x-ratelimit-reset", str(reset).encode())]
        if used > self.limit:
            retry = max(1, math.ceil(reset - time.time()))
            response = error_response(429, f"more than {self.limit} requests in {self.period} s; retry in {retry} s",
                                      code="rate_limited", headers={"Retry-After": str(retry)})
            response.raw_headers.extend(headers)
            return await response(scope, receive, send)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _client_key(scope: Scope) -> str:
    authorization = dict(scope["headers"]).get(b"authorization", b"")
    if authorization:
        return "token:" + hashlib.sha256(authorization).hexdigest()
    client = scope.get("client") or ("unknown", 0)
    return f"address:{client[0]}"
