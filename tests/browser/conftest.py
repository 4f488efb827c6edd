"""Fixtures for the dashboard's browser tests: Debian's Chromium driven by Playwright against a real `forgeyard serve`.

Never downloads a browser: /usr/bin/chromium (apt package `chromium`, installed by tests/services/install.sh) or
the test skips — fails under FORGEYARD_REQUIRE_SERVICES=1. Every page a test opens fails the test at its end if
the browser logged an error (a script error, a Content-Security-Policy violation, a failed module load).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.services import service_unavailable
from tests.services.api_server import ApiServer, start_api_server

CHROMIUM = os.environ.get("FORGEYARD_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "dashboard"
# What a page may log without failing its test: the API's refusals the pages provoke on purpose (the YAML preview
# asks about invalid combinations to show the API's message; a wrong token gets 401; a run's stream refuses a
# revoked token before the page checks it and signs out) — Chromium logs each one.
EXPECTED_CONSOLE = re.compile(r"Failed to load resource: the server responded with a status of "
                              r"(400|401|403|404|409|413|422)"
                              r"|^WebSocket connection to 'ws://127\.0\.0\.1:\d+/api/pipelines/runs/\d+/ws\?since=\d+' "
                              r"failed: Error during WebSocket handshake: Unexpected response code: 403$")


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not os.access(CHROMIUM, os.X_OK):
        service_unavailable(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        service_unavailable("Playwright for Python is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def dashboard_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A `forgeyard serve --workers 2` on SQLite for one test module."""
    with start_api_server(tmp_path_factory.mktemp("dashboard")) as server:
        yield server


@pytest.fixture
def open_page(browser, request: pytest.FixtureRequest) -> Iterator[Callable[..., object]]:
    """open_page(role, path, server) → a Playwright Page signed in through the form with a token of `role` (None:
    not signed in), at `path`; each in its own browser context (its own sessionStorage). `server` defaults to the
    module's `dashboard_server`; another one must outlive the test (a module fixture), or its page logs errors."""
    contexts, problems = [], []

    def open_as(role: str | None = "admin", path: str = "#/runs", server: ApiServer | None = None):
        server = server or request.getfixturevalue("dashboard_server")
        context = browser.new_context(accept_downloads=True, base_url=server.base_url,
                                      viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.on("console", lambda message: message.type == "error" and not EXPECTED_CONSOLE.search(message.text)
                and problems.append(f"console: {message.text}"))
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.goto("/ui/")
        if role is not None:
            sign_in(page, server.token(role) if role != "admin" else server.admin_token)
        if path != "#/runs":
            page.goto(f"/ui/{path}")
        return page

    yield open_as
    for context in contexts:
        context.close()
    assert not problems, "the browser logged errors:\n" + "\n".join(problems)


def sign_in(page, token: str) -> None:
    """Signs in through the form and waits for the runs page."""
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Runs").wait_for()


def screenshot(page, name: str) -> Path:
    """Saves a full-page screenshot as tests/artifacts/dashboard/NAME.png (ignored by git) for reviewers."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
