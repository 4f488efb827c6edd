"""Registry logins: the /v2/ check (Basic, the Bearer token flow, refusals) and the ECR exchange against moto."""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.fernet import Fernet

from runner.catalog import Registry
from runner.registry_auth import RegistryAuthError, RegistryLogin, check_login, login_for, verify_registry

USERNAME, PASSWORD, TOKEN = "robot", f"pw-{secrets.token_hex(12)}", f"tk-{secrets.token_hex(12)}"


@dataclass
class FakeRegistry:
    """A /v2/ endpoint on loopback. `mode`: basic | bearer | open | redirect; `realm` overrides the token URL."""

    port: int = 0
    mode: str = "basic"
    username: str = USERNAME
    password: str = PASSWORD
    realm: str | None = None
    requests: list[tuple[str, dict[str, list[str]], str]] = field(default_factory=list)  # path, query, auth

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


def _handler(fake: FakeRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _answer(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"{}") -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            authorization = self.headers.get("Authorization", "")
            basic = "Basic " + base64.b64encode(f"{fake.username}:{fake.password}".encode()).decode()
            fake.requests.append((parts.path, parse_qs(parts.query), authorization))
            if parts.path == "/token":
                ok = authorization == basic
                return self._answer(200 if ok else 401, body=json.dumps({"token": TOKEN} if ok else {}).encode())
            if fake.mode == "open":
                return self._answer(200)
            if fake.mode == "redirect":
                return self._answer(302, {"Location": f"http://{fake.host}/elsewhere"})
            expected = f"Bearer {TOKEN}" if fake.mode == "bearer" else basic
            if authorization == expected:
                return self._answer(200)
            realm = fake.realm or f"http://{fake.host}/token"
            challenge = f'Bearer realm="{realm}",service="fake-registry"' if fake.mode == "bearer" else \
                'Basic realm="fake"'
            self._answer(401, {"WWW-Authenticate": challenge})

    return Handler


@pytest.fixture
def fake_registry() -> Iterator[FakeRegistry]:
    fake = FakeRegistry()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture(autouse=True)
def environment() -> Iterator[None]:
    with mock.patch.dict(os.environ, {"FORGEYARD_SECRET_KEY": Fernet.generate_key().decode(),
                                      "FORGEYARD_ALLOW_PRIVATE_REGISTRIES": "1"}):
        yield


def registry(url: str, credentials: dict[str, str], *, type: str = "generic", username: str | None = USERNAME):
    record = Registry(name="r", type=type, url=url, username=username)
    record.set_credentials(credentials)
    return record


def test_basic_login(fake_registry: FakeRegistry) -> None:
    assert verify_registry(registry(fake_registry.host, {"password": PASSWORD})) == \
        (True, f"logged in to {fake_registry.host} as {USERNAME}")
    ok, message = verify_registry(registry(fake_registry.host, {"password": "wrong-password"}))
    assert not ok and message == f"{fake_registry.host} refused the credentials (HTTP 401)"
    ok, message = verify_registry(registry(fake_registry.host, {}))
    assert not ok and "none are stored" in message


def test_bearer_token_flow(fake_registry: FakeRegistry) -> None:
    fake_registry.mode = "bearer"
    assert verify_registry(registry(fake_registry.host, {"token": PASSWORD}))[0] is True
    token_request = next(query for path, query, _ in fake_registry.requests if path == "/token")
    assert token_request == {"service": ["fake-registry"], "account": [USERNAME]}
    assert fake_registry.requests[-1] == ("/v2/", {}, f"Bearer {TOKEN}")

    secret = f"wrong-{secrets.token_hex(8)}"
    ok, message = verify_registry(registry(fake_registry.host, {"token": secret}))
    assert not ok and message == f"{fake_registry.host} refused the credentials (token service HTTP 401)"


def test_credentials_go_to_no_other_plain_http_token_service(fake_registry: FakeRegistry) -> None:
    fake_registry.mode = "bearer"
    fake_registry.realm = f"http://localhost:{fake_registry.port}/token"  # another host, and not https
    ok, message = verify_registry(registry(fake_registry.host, {"password": PASSWORD}))
    assert not ok and "will not send credentials" in message
    assert [path for path, _, _ in fake_registry.requests] == ["/v2/"]

    fake_registry.realm = "https://169.254.169.254/token"  # https, but a link-local address
    with mock.patch.dict(os.environ, {"FORGEYARD_ALLOW_PRIVATE_REGISTRIES": "0"}):
        ok, message = check_login(RegistryLogin(fake_registry.host, USERNAME, PASSWORD))
    assert not ok and "not accepted" in message


def test_open_redirecting_and_unreachable_registries(fake_registry: FakeRegistry) -> None:
    fake_registry.mode = "open"
    assert verify_registry(registry(fake_registry.host, {}))[0] is True
    fake_registry.mode = "redirect"
    assert verify_registry(registry(fake_registry.host, {"password": PASSWORD})) == \
        (False, f"{fake_registry.host} answered HTTP 302 at /v2/: is it a container registry?")
    assert all(path == "/v2/" for path, _, _ in fake_registry.requests)  # the redirect was not followed

    ok, message = verify_registry(registry("127.0.0.1:9", {"password": PASSWORD}))
    assert not ok and message.startswith("could not reach 127.0.0.1:9")


def test_private_hosts_need_the_opt_in() -> None:
    with mock.patch.dict(os.environ, {"FORGEYARD_ALLOW_PRIVATE_REGISTRIES": "0"}):
        ok, message = verify_registry(registry("10.0.0.5:5000", {"password": PASSWORD}))
    assert not ok and "FORGEYARD_ALLOW_PRIVATE_REGISTRIES" in message


def test_login_for_plain_registries_binds_the_secret_to_the_host() -> None:
    login = login_for(registry("", {"token": TOKEN}, type="ghcr"))
    assert (login.host, login.username, login.password) == ("ghcr.io", USERNAME, TOKEN)
    assert TOKEN not in repr(login)
    assert login_for(registry("https://Index.Docker.io/", {}, type="docker_hub")).host == "docker.io"


# -- ECR --------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


ECR_KEYS = {"aws_access_key_id": "AKIAIOSFODNN7EXAMPLE", "aws_secret_access_key": secrets.token_hex(20),
            "region": "eu-west-1"}


def test_ecr_login_comes_from_get_authorization_token(moto_endpoint: str, fake_registry: FakeRegistry) -> None:
    with mock.patch.dict(os.environ, {"AWS_ENDPOINT_URL_ECR": moto_endpoint}):
        login = login_for(registry("", ECR_KEYS, type="ecr", username=None))
        assert login.host == "123456789012.dkr.ecr.eu-west-1.amazonaws.com"  # moto's account, from proxyEndpoint
        assert (login.username, login.password) == ("AWS", "123456789012-auth-token")

        # With a url of its own (here the local stand-in), that host gets the exchanged password at /v2/.
        fake_registry.username, fake_registry.password = "AWS", login.password
        ecr = registry(fake_registry.host, ECR_KEYS, type="ecr", username=None)
        fake_registry.requests.clear()
        assert verify_registry(ecr) == (True, f"logged in to {fake_registry.host} as AWS")
        sent = base64.b64decode(fake_registry.requests[-1][2].removeprefix("Basic ")).decode()
        assert sent == "AWS:123456789012-auth-token"


def test_ecr_failures_are_clean_messages() -> None:
    with pytest.raises(RegistryAuthError, match="has no aws_secret_access_key"):
        login_for(registry("", {"aws_access_key_id": "AKIA", "region": "eu-west-1"}, type="ecr"))
    with mock.patch.dict(os.environ, {"AWS_ENDPOINT_URL_ECR": "http://127.0.0.1:9"}):
        ok, message = verify_registry(registry("", ECR_KEYS, type="ecr"))
    assert not ok and message == "could not get an ECR login from AWS (EndpointConnectionError)"
    assert ECR_KEYS["aws_secret_access_key"] not in message
