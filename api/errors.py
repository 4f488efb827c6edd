"""The one error shape of the API, `{"error": type, "message": text}`, and the handlers that produce it.

`error` carries the documented error type ("Validation error", "Resource not found", …); a machine-readable
`code` may stand beside it. Messages are for people: no tracebacks, server paths or secrets.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

log = logging.getLogger("forgeyard.api")

ERROR_TYPES = {
    400: "Validation error", 401: "Unauthorized", 403: "Forbidden", 404: "Resource not found",
    405: "Method not allowed", 409: "Conflict", 410: "Gone", 413: "Payload too large",
    415: "Unsupported media type", 422: "Validation error", 429: "Rate limit exceeded", 500: "Internal error",
}


class ApiError(Exception):
    """Raised by a handler to answer with the error shape."""

    def __init__(self, status: int, message: str, *, code: str | None = None, error: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.error = error or ERROR_TYPES.get(status, "Error")
        self.headers = headers or {}


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found", code="not_found")


def validation(message: str, code: str = "invalid") -> ApiError:
    return ApiError(400, message, code=code)


def error_response(status: int, message: str, *, code: str | None = None, error: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": error or ERROR_TYPES.get(status, "Error"), "message": message}
    if code:
        body["code"] = code
    return JSONResponse(body, status_code=status, headers=headers)


async def api_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, code=exc.code, error=exc.error, headers=exc.headers)


async def http_exception_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    messages = {404: "no such endpoint", 405: "method not allowed for this endpoint"}
    message = messages.get(exc.status_code, str(exc.detail))
    codes = {400: "invalid", 404: "not_found", 405: "method_not_allowed"}  # Starlette's own: routing, forms
    return error_response(exc.status_code, message, code=codes.get(exc.status_code, "error"),
                          headers=dict(exc.headers or {}))


async def internal_error_handler(request: Request, exc: Exception) -> JSONResponse:
    log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "the server met an internal error; it has been logged", code="internal")
