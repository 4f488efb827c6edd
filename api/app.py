"""The Starlette application: every route under /api/pipelines, with auth, limits and the one error shape, and the
dashboard's static files under /ui/."""

from __future__ import annotations

from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Mount

from api.errors import ApiError, api_error_handler, http_exception_handler, internal_error_handler
from api.limits import BodyLimitMiddleware, RateLimitMiddleware
from api.routes import (
    dashboard,
    health,
    outputs,
    presets,
    registries,
    repositories,
    runs,
    statistics,
    templates,
    tokens,
    websocket,
    workers,
)
from runner import database


def create_app(*, worker=None, database_url: str | None = None, rate_limit: str | None = None) -> Starlette:
    """The API; `worker` (runner.worker.Worker) is woken when a run is queued and told of cancels."""

    @asynccontextmanager
    async def lifespan(app: Starlette):
        database.connect(database_url)
        app.state.worker = worker
        yield

    pipeline_routes = [*runs.routes, *outputs.routes, *statistics.routes, *repositories.routes, *registries.routes,
                       *templates.routes, *presets.routes, *tokens.routes, *websocket.routes,
                       *workers.routes]
    return Starlette(
        routes=[*health.routes, Mount("/api/pipelines", routes=pipeline_routes), *dashboard.routes],
        middleware=[Middleware(RateLimitMiddleware, rate=rate_limit), Middleware(BodyLimitMiddleware)],
        exception_handlers={ApiError: api_error_handler, HTTPException: http_exception_handler,
                            Exception: internal_error_handler},
        lifespan=lifespan,
    )
