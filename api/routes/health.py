"""`GET /api/health` (no token needed: the database and git's version) and the OpenAPI document."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import yaml
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runner import git
from runner.database import db
from schemas import schema_path


@cache
def _git() -> dict[str, Any]:
    """The installed git's version and whether it has the security fixes; read once (serve checked it at start)."""
    version = git.git_version()
    return {"version": ".".join(map(str, version)) or None, "ok": git.check_git_version(version) is None}


async def health(_request: Request) -> JSONResponse:
    git_state = await run_in_threadpool(_git)

    def check() -> bool:
        db.execute_sql("SELECT 1")
        return True

    try:
        await run_in_threadpool(check)
    except Exception:  # a health check reports, it does not raise
        return JSONResponse({"status": "unhealthy", "database": "unreachable", "git": git_state}, status_code=503)
    healthy = git_state["ok"]
    return JSONResponse({"status": "ok" if healthy else "unhealthy", "database": "ok", "git": git_state},
                        status_code=200 if healthy else 503)


@cache
def _openapi_text() -> str:
    return json.dumps(yaml.safe_load(schema_path("openapi.yaml").read_text()))


async def openapi(_request: Request) -> Response:
    return Response(_openapi_text(), media_type="application/json")


routes = [Route("/api/health", health, methods=["GET"]), Route("/api/openapi.json", openapi, methods=["GET"])]
