"""How a route handler is wrapped: role check, JSON body parsing, and the database work off the event loop."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from api.auth import require
from api.errors import ApiError, validation


def endpoint(role: str, *, body: bool = False) -> Callable:
    """Wrap a sync `handler(request[, body])`: it runs in a thread once the caller's role allows `role`."""

    def wrap(handler: Callable[..., Response]) -> Callable:
        async def route(request: Request) -> Response:
            data = await read_json(request) if body else None

            def call() -> Response:
                require(request, role)
                return handler(request, data) if body else handler(request)

            return await run_in_threadpool(call)

        route.__name__ = handler.__name__
        route.__doc__ = handler.__doc__
        return route

    return wrap


def by_method(**handlers: Callable) -> Callable:
    """One endpoint for a path served by several methods, so a 405 names them all in `Allow`."""

    async def route(request: Request) -> Response:
        return await handlers[request.method](request)

    return route


async def read_json(request: Request) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise ApiError(415, "send the body as application/json", code="unsupported_media_type")
    raw = await request.body()
    try:
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the body is not valid JSON", code="invalid_json") from None
    if not isinstance(data, dict):
        raise validation("the body must be a JSON object", "invalid_json")
    return data


def int_param(request: Request, name: str, *, default: int | None = None, low: int = 0,
              high: int | None = None) -> int | None:
    """A query parameter as an int within [low, high]; 400 naming it otherwise."""
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise validation(f"{name} must be an integer") from None
    if value < low or (high is not None and value > high):
        raise validation(f"{name} must be between {low} and {high}" if high is not None else f"{name} must be ≥ {low}")
    return value
