"""How a route handler is wrapped: role check, JSON body parsing, and the database work off the event loop."""

from __future__ import annotations

import json
import math
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


MAX_JSON_DEPTH = 32  # arrays and objects within each other; the deepest documented body has 5 levels


async def read_json(request: Request) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise ApiError(415, "send the body as application/json", code="unsupported_media_type")
    raw = await request.body()
    try:
        # NaN, Infinity and numbers beyond a double are not JSON (RFC 8259), though Python's parser takes them;
        # nesting deep enough to exhaust the parser's recursion is refused like any other malformed body.
        data = json.loads(raw or b"null", parse_constant=_not_json, parse_float=_finite)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "the body is not valid JSON", code="invalid_json") from None
    if _depth(data) > MAX_JSON_DEPTH:
        raise validation(f"the body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep", "invalid_json")
    if not isinstance(data, dict):
        raise validation("the body must be a JSON object", "invalid_json")
    return data


def _not_json(constant: str) -> float:
    raise ValueError(f"{constant} is not a JSON value")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is beyond the range of a number")
    return value


def _depth(value: Any) -> int:
    """How deep arrays and objects nest in `value`, counted without recursion (up to just past the limit)."""
    deepest, pending = 0, [(value, 1)]
    while pending and deepest <= MAX_JSON_DEPTH:
        item, level = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, level)
            pending.extend((child, level + 1) for child in children)
    return deepest


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
