"""The dashboard's files as served by a real `forgeyard serve`: strict headers, no traversal, no HTML from data.

What the pages do is tested in a browser (tests/browser/); this checks what must hold for every file, page or not.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from api.routes.dashboard import DASHBOARD_DIR
from tests.services.api_server import ApiServer, start_api_server

SOURCES = sorted(DASHBOARD_DIR.rglob("*.js"))
HTML = sorted(DASHBOARD_DIR.rglob("*.html"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    # A low rate limit: the static files must not count against it.
    with start_api_server(tmp_path_factory.mktemp("dashboard-files"), rate_limit="5/minute") as started:
        yield started


def _get(server: ApiServer, path: str) -> httpx.Response:
    return httpx.get(server.base_url + path, trust_env=False, follow_redirects=False)


def test_root_redirects_to_the_dashboard(server: ApiServer) -> None:
    response = _get(server, "/")
    assert response.status_code == 302 and response.headers["location"] == "/ui/"


@pytest.mark.parametrize("path", ["/ui/", "/ui/js/main.js", "/ui/app.css", "/ui/js/pages/run.js"])
def test_every_file_has_the_strict_headers(server: ApiServer, path: str) -> None:
    response = _get(server, path)
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'" and "unsafe" not in policy
    assert directives["frame-ancestors"] == "'none'" and directives["base-uri"] == "'none'"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_files_are_served_with_their_types(server: ApiServer) -> None:
    assert _get(server, "/ui/").headers["content-type"].startswith("text/html")
    assert _get(server, "/ui/js/main.js").headers["content-type"].startswith("text/javascript")
    assert _get(server, "/ui/app.css").headers["content-type"].startswith("text/css")


@pytest.mark.parametrize("path", ["/ui/../api/app.py", "/ui/%2e%2e/api/app.py", "/ui/..%2fapi%2fapp.py",
                                  "/ui/js/../../routes/dashboard.py", "/ui//etc/passwd", "/ui/%2fetc%2fpasswd"])
def test_no_file_outside_the_dashboard_folder(server: ApiServer, path: str) -> None:
    response = httpx.get(server.base_url + path, trust_env=False)
    assert response.status_code == 404
    assert "import" not in response.text and "root:" not in response.text
    assert response.json()["error"] == "Resource not found"


def test_static_files_do_not_spend_the_rate_limit(server: ApiServer) -> None:
    for _ in range(12):  # more than the server's 5/minute
        assert _get(server, "/ui/js/dom.js").status_code == 200
    assert _get(server, "/api/pipelines/runs").status_code == 401  # the API still counts (and answers)


def test_the_api_still_limits_its_own_requests(server: ApiServer) -> None:
    statuses = [_get(server, "/api/pipelines/runs").status_code for _ in range(8)]
    assert 429 in statuses


# -- what the sources may not contain (the CSP enforces it in the browser; this keeps it from being written) --

@pytest.mark.parametrize("source", SOURCES, ids=lambda path: str(path.relative_to(DASHBOARD_DIR)))
def test_no_html_sinks_or_eval_in_scripts(source: Path) -> None:
    text = source.read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                 "localStorage", "setAttribute(\"on", "srcdoc"):
        assert sink not in text, f"{source.name} uses {sink}"


@pytest.mark.parametrize("page", HTML, ids=lambda path: path.name)
def test_no_inline_code_in_html(page: Path) -> None:
    text = page.read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), "inline <script>"
    assert not re.search(r"\son[a-z]+\s*=", text), "inline event handler"
    assert not re.search(r"\sstyle\s*=", text), "inline style"
    assert not re.search(r"(src|href)=\"(https?:)?//", text), "a file from another origin (no CDN)"


def test_every_script_the_pages_import_is_shipped() -> None:
    """Imports resolve to files in the package (nothing fetched from elsewhere, nothing missing)."""
    for source in SOURCES:
        for target in re.findall(r"^import .* from \"([^\"]+)\";", source.read_text(), re.MULTILINE):
            assert target.startswith("."), f"{source.name} imports {target} from outside the package"
            assert (source.parent / target).resolve().is_file(), f"{source.name} imports missing {target}"
