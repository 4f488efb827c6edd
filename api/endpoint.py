"""How a route handler is wrapped: role check, JSON body parsing, and the database work off the event loop."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from api.auth import require
from api.errors import ApiError, not_found, validation


def endpoint(role: str, *, body: bool = False) -> Callable:
    """Wrap a sync `handler(request[, body])`: it runs in a thread once the caller's role allows `role`."""

    def wrap(handler: Callable[..., Response]) -> Callable:
        async def route(request: Request) -> Response:
            await run_in_threadpool(require, request, role)  # who asks comes before what they sent
            data = await read_json(request) if body else None
            return await run_in_threadpool(lambda: handler(request, data) if body else handler(request))

        route.__name__ = handler.__name__
        route.__doc__ = handler.__doc__
        return route

    return wrap


def by_method(**handlers: Callable) -> Callable:
    """One endpoint for a path served by several methods, so a 405 names them all in `Allow`."""

    async def route(request: Request) -> Response:
        return await handlers["GET" if request.method == "HEAD" else request.method](request)

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


MAX_INT = 2**63 - 1  # the largest id or offset a database column holds


def int_param(request: Request, name: str, *, default: int | None = None, low: int = 0,
              high: int = MAX_INT) -> int | None:
    """A query parameter as an int within [low, high]; 400 naming it otherwise (an empty value too)."""
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise validation(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise validation(f"{name} must be between {low} and {high}")
    return value


def path_id(request: Request, name: str, noun: str) -> int:
    """An id from the path; one no database could hold is simply not found."""
    value = request.path_params[name]
    if value > MAX_INT:
        raise not_found(f"{noun} {value}")
    return value
