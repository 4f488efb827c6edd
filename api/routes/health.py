"""`GET /api/health` (no token needed) and the OpenAPI document at `GET /api/openapi.json`."""

from __future__ import annotations

import json
from functools import cache

import yaml
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runner.database import db
from schemas import schema_path


async def health(_request: Request) -> JSONResponse:
    def check() -> bool:
        db.execute_sql("SELECT 1")
        return True

    try:
        await run_in_threadpool(check)
    except Exception:  # a health check reports, it does not raise
        return JSONResponse({"status": "unhealthy", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})


@cache
def _openapi_text() -> str:
    return json.dumps(yaml.safe_load(schema_path("openapi.yaml").read_text()))


async def openapi(_request: Request) -> Response:
    return Response(_openapi_text(), media_type="application/json")


routes = [Route("/api/health", health, methods=["GET"]), Route("/api/openapi.json", openapi, methods=["GET"])]
