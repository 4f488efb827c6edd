"""The web dashboard's static files under /ui/ (shipped in the package, nothing from a CDN), with strict headers.

The dashboard is a client of the REST API like any other: these routes serve files only, never data, and need no
token (the pages ask for one and send it to the API themselves).
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import RedirectResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "dashboard"
# Scripts, styles and fetches from this origin only, no inline code or eval, images also from blob: (logo
# previews fetched with the token), no framing, no plugins, forms and <base> pinned.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-cache",  # revalidate by ETag, so an upgraded server never runs yesterday's scripts
}


class DashboardFiles(StaticFiles):
    """StaticFiles with the security headers on every answer, 404s included."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await super().__call__(scope, receive, send_with_headers)


async def to_dashboard(_request) -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=302)


routes = [
    Route("/", to_dashboard, methods=["GET"]),
    Mount("/ui", app=DashboardFiles(directory=DASHBOARD_DIR, html=True), name="dashboard"),
]
