"""GET /api/pipelines/workers: the workers sharing the database, with their last heartbeat and current runs."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from api.endpoint import endpoint
from runner.workers_view import list_workers


@endpoint("viewer")
def workers(_request: Request) -> JSONResponse:
    listed = list_workers()
    return JSONResponse({"success": True, "workers": listed, "count": len(listed)})


routes = [Route("/workers", workers, methods=["GET"])]
