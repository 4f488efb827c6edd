"""Catalogue rows P01–P09 and A10 (API attacks) against a real `forgeyard serve`, over HTTP and raw sockets."""

from __future__ import annotations

import gzip
import json
import secrets
import select
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runner.models import Run
from tests.adversarial.api_tools import peak_rss_mib, raw_request, refused, ws_handshake
from tests.adversarial.conftest import leaks, make_canary, run_count
from tests.services.api_server import ApiServer, start_api_server

pytestmark = pytest.mark.security

ZIP_REQUEST = {"steps_to_execute": ["clone_repo", "create_zip"], "output_type": "zip"}
ONE_LINE = "name: one\njobs:\n  a:\n    steps:\n      - run: echo one\n"
DASHBOARD = "https://dashboard.example"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """The module's `forgeyard serve`, with one listed WebSocket origin besides its own."""
    with start_api_server(tmp_path_factory.mktemp("attacks"),
                          extra_env={"FORGEYARD_ALLOWED_ORIGINS": DASHBOARD}) as started:
        yield started


def pending_run(server: ApiServer) -> dict:
    response = server.client().post("/runs", json={"spec": ONE_LINE})
    assert response.status_code == 201, response.text
    return response.json()["pipeline_run"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def status_line(answer: bytes) -> bytes:
    return answer.split(b"\r\n")[0]


# -- P01/P02: one organisation, roles instead of owners ----------------------------------------------------------

def test_P01_a_viewer_reads_runs_but_cannot_act_on_them(server: ApiServer):
    admin, viewer = server.client(), server.client(server.token("viewer"))
    run = pending_run(server)
    created = {kind: admin.post(f"/{kind}", json=body).json()[key]["id"] for kind, key, body in (
        ("templates", "template", {"name": "p01", "app_name": "P01"}),
        ("presets", "preset", {"name": "p01", "settings": {}}),
        ("tokens", "api_token", {"name": "p01", "role": "viewer"}))}
    before = run_count(server)
    attempts = [("POST", "/runs", ZIP_REQUEST), ("POST", f"/runs/{run['id']}/execute", None),
                ("POST", f"/runs/{run['id']}/cancel", None), ("POST", "/cleanup", None),
                ("POST", "/tokens", {"name": "x", "role": "admin"}), ("POST", "/presets", {"name": "x"}),
                *[("DELETE", f"/{kind}/{record_id}", None) for kind, record_id in created.items()],
                ("PATCH", f"/presets/{created['presets']}", {"name": "renamed"})]
    for method, path, body in attempts:
        refused(viewer.request(method, path, json=body), 403, "forbidden")
    assert viewer.get(f"/runs/{run['id']}").json()["pipeline_run"]["status"] == "pending"  # not queued
    assert run_count(server) == before
    for kind in ("templates", "presets"):
        assert admin.get(f"/{kind}/{created[kind]}").status_code == 200, kind
    token = next(t for t in admin.get("/tokens").json()["tokens"] if t["id"] == created["tokens"])
    assert not token["revoked"]
    # what a viewer may do, it may: read the run, its log and its stream
    assert viewer.get(f"/runs/{run['id']}/logs").status_code == 200
    assert ws_handshake(server, run["id"], bearer(server.token("viewer"))) == b"HTTP/1.1 101 Switching Protocols"


def test_P02_a_revoked_or_missing_token_reads_no_run_and_no_log_frame(server: ApiServer):
    admin = server.client()
    run = pending_run(server)
    made = admin.post("/tokens", json={"name": "p02", "role": "operator"}).json()
    token, token_id = made["token"], made["api_token"]["id"]
    assert httpx.get(f"{server.api_url}/runs/{run['id']}", headers=bearer(token), trust_env=False).status_code == 200
    assert ws_handshake(server, run["id"], bearer(token)).startswith(b"HTTP/1.1 101")
    assert admin.delete(f"/tokens/{token_id}").status_code == 200
    answers = [httpx.request(method, f"{server.api_url}{path}", headers=bearer(token), trust_env=False)
               for method, path in (("GET", f"/runs/{run['id']}"), ("GET", f"/runs/{run['id']}/logs"),
                                    ("POST", f"/runs/{run['id']}/cancel"))]
    for answer in answers:
        refused(answer, 401, "unauthorized")
        assert answer.headers["www-authenticate"].startswith("Bearer")
    for headers, query in ((bearer(token), ""), ({}, f"?token={token}"), ({}, "")):
        answer = ws_handshake(server, run["id"], headers, query)
        assert status_line(answer) == b"HTTP/1.1 403 Forbidden", answer  # refused before the upgrade
        assert b'"type"' not in answer  # so no frame, status or log, ever left


# -- P03: malformed credentials ------------------------------------------------------------------------------------

def test_P03_missing_malformed_unknown_and_revoked_tokens_are_401_and_no_upgrade(server: ApiServer):
    made = server.client().post("/tokens", json={"name": "p03", "role": "admin"}).json()
    server.client().delete(f"/tokens/{made['api_token']['id']}")
    run = pending_run(server)
    credentials: list[bytes | None] = [
        None, b"Bearer", b"Basic x", b"Basic " + server.admin_token.encode(), b"Bearer a b",
        "Bearer é€".encode(), b"Bearer \xff\xfe", b"Bearer fy_" + secrets.token_urlsafe(32).encode(),
        b"Bearer " + b"A" * 8000, f"Bearer {made['token']}".encode(), f"Token {server.admin_token}".encode()]
    for value in credentials:
        headers = {} if value is None else {"Authorization": value}
        answer = httpx.get(f"{server.api_url}/runs", headers=headers, trust_env=False)
        refused(answer, 401, "unauthorized")
        assert answer.headers["www-authenticate"] == 'Bearer realm="forgeyard"', value
        upgrade = ws_handshake(server, run["id"], headers)
        assert status_line(upgrade) == b"HTTP/1.1 403 Forbidden" and b'"type"' not in upgrade, (value, upgrade)


# -- P04: cross-site WebSocket hijacking -------------------------------------------------------------------------

def test_P04_a_cross_origin_websocket_upgrade_is_refused_at_the_handshake(server: ApiServer):
    run = pending_run(server)
    admin = bearer(server.admin_token)
    for origin in ("https://evil.example", "null", f"{DASHBOARD}.evil.example", f"http://evil.example:{server.port}",
                   f"file://127.0.0.1:{server.port}"):
        answer = ws_handshake(server, run["id"], {**admin, "Origin": origin})
        assert status_line(answer) == b"HTTP/1.1 403 Forbidden" and b'"type"' not in answer, (origin, answer)
    for origin in (None, f"http://127.0.0.1:{server.port}", DASHBOARD, DASHBOARD.upper() + "/"):
        headers = admin if origin is None else {**admin, "Origin": origin}
        assert ws_handshake(server, run["id"], headers) == b"HTTP/1.1 101 Switching Protocols", origin


# -- P05: mass assignment ------------------------------------------------------------------------------------------

def test_P05_read_only_and_unknown_fields_are_refused_and_nothing_is_stored(server: ApiServer):
    admin = server.client()
    forged = {"status": "succeeded", "owner_id": 1, "id": "x", "created_at": "2000-01-01"}
    before = run_count(server)
    for body, named in (({**ZIP_REQUEST, **forged}, "owner_id"), ({"pipeline": "greet.yml", **forged}, "status"),
                        ({"spec": ONE_LINE, **forged}, "created_at"), ({**ZIP_REQUEST, "attempt": 9}, "attempt")):
        assert named in refused(admin.post("/runs", json=body), 400, "unknown_field")["message"]
    assert run_count(server) == before

    official = f"file://{server.home.parent / 'official.git'}"
    resources = {  # collection → (response key, a valid body)
        "repositories": ("repository", {"name": "p05-repository", "url": official}),
        "registries": ("registry", {"name": "p05-registry", "type": "ghcr", "namespace": "acme"}),
        "templates": ("template", {"name": "p05-template", "app_name": "P05"}),
        "presets": ("preset", {"name": "p05-preset", "settings": {}}),
        "tokens": ("api_token", {"name": "p05-token", "role": "viewer"}),
    }
    extras = {"id": 424242, "created_at": "2000-01-01T00:00:00Z", "token_hash": "0" * 64, "is_verified": True,
              "revoked_at": None, "credentials_json": "{}"}
    for collection, (key, body) in resources.items():
        total = admin.get(f"/{collection}").json()["total"]
        for name, value in extras.items():
            refused(admin.post(f"/{collection}", json={**body, name: value}), 400, "unknown_field")
        assert admin.get(f"/{collection}").json()["total"] == total, collection
        record = admin.post(f"/{collection}", json=body).json()[key]  # the same body without them is accepted
        if collection == "tokens":
            continue  # a token is not updated, only revoked
        for name, value in extras.items():
            refused(admin.patch(f"/{collection}/{record['id']}", json={name: value}), 400, "unknown_field")
        stored = admin.get(f"/{collection}/{record['id']}").json()[key]
        assert stored["id"] == record["id"] and stored["created_at"] == record["created_at"], collection
        assert stored.get("is_verified", False) is False


# -- P06: rate limits ----------------------------------------------------------------------------------------------

RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


def test_P06_rate_limits_per_token_and_per_address_for_bad_tokens(tmp_path: Path):
    limited = start_api_server(tmp_path, rate_limit="5/hour")  # an hour: no window ends during the test
    try:
        viewer = limited.client(limited.token("viewer"))
        answers = [viewer.get("/steps"), viewer.get("/runs/999999"), viewer.get("/no-such-endpoint"),
                   viewer.post("/runs", json=ZIP_REQUEST), viewer.patch("/runs/1"), viewer.get("/steps")]
        assert [a.status_code for a in answers] == [200, 404, 404, 403, 405, 429]
        assert [int(a.headers["x-ratelimit-remaining"]) for a in answers] == [4, 3, 2, 1, 0, 0]
        assert all(a.headers["x-ratelimit-limit"] == "5" and int(a.headers["x-ratelimit-reset"]) > time.time()
                   for a in answers)
        refused(answers[-1], 429, "rate_limited")
        assert 1 <= int(answers[-1].headers["retry-after"]) <= 3600
        outside = httpx.get(f"{limited.base_url}/no-such-page", headers=bearer(limited.token("operator")),
                            trust_env=False)
        assert outside.status_code == 404 and all(name in outside.headers for name in RATE_HEADERS)

        # A made-up token per request: all of them count against this address, so guessing is throttled.
        guesses = [httpx.get(f"{limited.api_url}/runs", headers=bearer(f"fy_{secrets.token_urlsafe(32)}"),
                             trust_env=False) for _ in range(6)]
        statuses = [g.status_code for g in guesses]
        assert 429 in statuses and set(statuses[:statuses.index(429)]) <= {401}, statuses
        assert all(name in g.headers for g in guesses for name in RATE_HEADERS)
        refused(guesses[-1], 429, "rate_limited")
        assert "retry-after" in guesses[-1].headers
        handshake = ws_handshake(limited, 1, bearer(f"fy_{secrets.token_urlsafe(32)}"))
        assert status_line(handshake) == b"HTTP/1.1 429 Too Many Requests", handshake
        # ... while a valid token from the same address keeps its own window
        assert limited.client(limited.token("operator")).get("/steps").status_code == 200
    finally:
        limited.stop()


# -- P07: methods --------------------------------------------------------------------------------------------------

def test_P07_unsupported_methods_are_405_with_allow_and_the_error_shape(server: ApiServer):
    client = server.client()
    for method, path, allowed in (("PATCH", "/runs/1", {"GET"}), ("PUT", "/outputs/1/download", {"GET"}),
                                  ("DELETE", "/statistics", {"GET"}), ("POST", "/steps", {"GET"}),
                                  ("DELETE", "/runs", {"GET", "POST"}), ("PUT", "/tokens/1", {"DELETE"}),
                                  ("PUT", "/runs/1/cancel", {"POST"}), ("TRACE", "/runs", {"GET", "POST"})):
        answer = client.request(method, path)
        assert refused(answer, 405, "method_not_allowed")["error"] == "Method not allowed"
        assert {m.strip() for m in answer.headers["allow"].split(",")} - {"HEAD"} == allowed, (method, path)


# -- P08: malformed content ----------------------------------------------------------------------------------------

def post_raw(server: ApiServer, body: bytes, content_type: str = "application/json") -> httpx.Response:
    headers = {**server.headers(), "Content-Type": content_type}  # its own connection: a 500 would close it
    return httpx.post(f"{server.api_url}/runs", content=body, headers=headers, trust_env=False)


def test_P08_malformed_content_is_4xx_never_500_and_lists_are_bounded(server: ApiServer):
    before = run_count(server)
    refused(post_raw(server, json.dumps(ZIP_REQUEST).encode(), "text/plain"), 415, "unsupported_media_type")
    not_json = [b'{"a":', b'{"pipeline": "greet.yml", "inputs": {"who": NaN}}',
                b'{"pipeline": "greet.yml", "inputs": {"who": Infinity}}',
                b'{"pipeline": "greet.yml", "inputs": {"who": -Infinity}}',
                b'{"pipeline": "greet.yml", "inputs": {"who": 1e400}}',
                b'{"pipeline": "greet.yml", "inputs": {"who": ' + b"9" * 5000 + b"}}",
                b"[" * 10_000, b'{"a":' * 10_000,
                b'{"pipeline": "greet.yml", "inputs": {"who": ' + b"[" * 900 + b"]" * 900 + b"}}",
                b'{"steps_to_execute": ["clone_repo", "apply_config", "create_zip"], "output_type": "zip", '
                b'"custom_parameters": {"settings": ' + b'{"a":' * 900 + b"1" + b"}" * 902]
    for body in not_json:
        refused(post_raw(server, body), 400, "invalid_json")
    for body in ({**ZIP_REQUEST, "git_repository_id": 10**30}, {**ZIP_REQUEST, "registry_id": -1},
                 {**ZIP_REQUEST, "custom_parameters": {"zip_level": 10**30}}):
        assert server.once("POST", "/runs", json=body).status_code == 400, body
    for query in ("limit=10000000", "limit=1001", "limit=-1", "limit=NaN", "offset=99999999999999999999",
                  "status=%00", "limit=1e3"):
        refused(server.once("GET", f"/runs?{query}"), 400, "invalid")
    assert run_count(server) == before

    # No page is unbounded: without ?limit= a list holds at most 1000 runs, `total` counts them all.
    with server.database():
        Run.insert_many([{"trigger": "api", "pipeline_name": "p08", "spec_yaml": ONE_LINE}] * 1001).execute()
    page = server.client().get("/runs").json()
    assert page["count"] == 1000 and page["total"] == before + 1001


# -- P09: internal errors ------------------------------------------------------------------------------------------

def test_P09_an_internal_error_is_answered_with_the_bare_shape_only(tmp_path: Path):
    canary = make_canary()
    broken = start_api_server(tmp_path, extra_env={"DEBUG": "true", "FORGEYARD_TEST_CANARY": canary})
    try:
        run = pending_run(broken)
        # A fault no handler expects: the runs table disappears under the running server.
        with sqlite3.connect(broken.home / "forgeyard.db") as database:
            database.execute("ALTER TABLE runs RENAME TO runs_moved_away")
        answers = [broken.once("GET", "/runs"), broken.once("GET", f"/runs/{run['id']}"),
                   broken.once("GET", "/statistics"), broken.once("POST", "/runs", json={"spec": ONE_LINE}),
                   broken.once("POST", f"/runs/{run['id']}/execute")]
        for answer in answers:
            assert answer.status_code == 500, answer.text
            assert answer.json() == {"error": "Internal error", "code": "internal",
                                     "message": "the server met an internal error; it has been logged"}
        texts = tuple(answer.text + str(answer.headers) for answer in answers)
        for word in ("Traceback", "sqlite", "runs_moved_away", "no such table", str(tmp_path), "File \""):
            assert not any(word in text for text in texts), word
        assert leaks(canary, broken.home, tmp_path, texts=texts) == []
        assert "no such table" in broken.log_tail()  # logged for the operator instead
    finally:
        broken.stop()


# -- A10: huge bodies ----------------------------------------------------------------------------------------------

def post_huge(server: ApiServer, path: str, headers: dict[str, str],
              chunks: Iterator[bytes]) -> tuple[bytes, int, int]:
    """Send a body chunk by chunk, never stopping for the answer: (the answer's first bytes, bytes sent when it
    had arrived, bytes the server took in all before it closed the connection)."""
    answer, answered_at, sent = b"", -1, 0
    with raw_request(server, f"POST {path} HTTP/1.1", headers) as connection:
        try:
            for chunk in chunks:
                if answered_at < 0 and select.select([connection], [], [], 0)[0]:
                    answered_at = sent
                connection.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # Linux keeps what had arrived readable after a reset
        answered_at = sent if answered_at < 0 else answered_at
        answer = connection.recv(1 << 16)
    return answer, answered_at, sent


def filled(start: bytes, mebibytes: int) -> Iterator[bytes]:
    """A body of `mebibytes` MiB in 1 MiB pieces: `start`, then spaces."""
    yield start + b" " * (MIB - len(start))
    for _ in range(mebibytes - 1):
        yield b" " * MIB


def chunked(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """`pieces` in HTTP/1.1 chunked transfer coding."""
    for piece in pieces:
        yield b"%x\r\n%s\r\n" % (len(piece), piece)
    yield b"0\r\n\r\n"


def test_A10_huge_bodies_are_refused_before_they_are_read(server: ApiServer):
    admin = server.client()
    template = admin.post("/templates", json={"name": "a10", "app_name": "A10"}).json()["template"]["id"]
    part = b'--x\r\nContent-Disposition: form-data; name="file"; filename="logo.png"\r\n\r\n'
    targets = {  # path → (content type, how the body starts: the rest is filler)
        "/api/pipelines/runs": ("application/json", b'{"spec": "'),
        f"/api/pipelines/templates/{template}/assets/logo": ("multipart/form-data; boundary=x", part)}
    before, peak = run_count(server), peak_rss_mib(server)
    auth = server.headers()
    for path, (content_type, start) in targets.items():
        # 100 MiB declared: answered after the headers, and the connection closed: the rest is never read.
        answer, answered_at, taken = post_huge(server, path, {**auth, "Content-Type": content_type,
                                                              "Content-Length": str(100 * MIB)}, filled(start, 100))
        assert status_line(answer) == b"HTTP/1.1 413 Request Entity Too Large", answer
        assert answered_at < 20 * MIB and taken < 50 * MIB, (answered_at, taken)
        assert b'"code":"payload_too_large"' in answer and b"connection: close" in answer.lower()

        # 100 MiB chunked, no length: refused once past the limit (10 MiB), not at the end.
        answer, answered_at, taken = post_huge(server, path, {**auth, "Content-Type": content_type,
                                                              "Transfer-Encoding": "chunked"},
                                               chunked(filled(start, 100)))
        assert status_line(answer) == b"HTTP/1.1 413 Request Entity Too Large", answer
        assert answered_at < 40 * MIB and taken < 60 * MIB, (answered_at, taken)

        # 100 KiB of gzip (100 members of 1 MiB) that would inflate to 100 MiB: refused unread, never inflated.
        bomb = gzip.compress(start) + gzip.compress(b" " * MIB) * 100
        answer = httpx.post(f"{server.base_url}{path}", content=bomb, trust_env=False,
                            headers={**auth, "Content-Type": content_type, "Content-Encoding": "gzip"})
        refused(answer, 415, "unsupported_content_encoding")
    assert run_count(server) == before
    assert peak_rss_mib(server) - peak < 50  # nothing near 100 MiB was held
    assert admin.get(f"/templates/{template}").json()["template"]["assets"] == []
