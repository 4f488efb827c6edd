"""A private registry (Debian's docker-registry) with htpasswd auth for the test session; loopback only, no TLS.

Plain http works because dockerd allows 127.0.0.0/8 registries without TLS by default.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.services import service_unavailable

USERNAME = "forgeyard-ci"
START_TIMEOUT = 15.0
MANIFEST_TYPES = ", ".join((
    "application/vnd.docker.distribution.manifest.v2+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.oci.image.index.v1+json"))

_CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  secret: {http_secret}
auth:
  htpasswd:
    realm: forgeyard-test
    path: {root}/htpasswd
"""


@dataclass(frozen=True)
class RegistryService:
    host: str  # 127.0.0.1:port, as image references and `docker login` name it
    username: str
    password: str

    def request(self, path: str, *, accept: str | None = None,
                password: str | None = None) -> tuple[int, dict[str, str], bytes]:
        """GET http://host/v2/<path> with basic auth; (status, headers, body), errors included."""
        token = base64.b64encode(f"{self.username}:{password or self.password}".encode()).decode()
        headers = {"Authorization": f"Basic {token}", **({"Accept": accept} if accept else {})}
        request = urllib.request.Request(f"http://{self.host}/v2/{path}", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def manifest(self, repository: str, reference: str) -> tuple[str, dict]:
        """(digest the registry gives it, manifest) of repository:reference; AssertionError if absent."""
        status, headers, body = self.request(f"{repository}/manifests/{reference}", accept=MANIFEST_TYPES)
        assert status == 200, f"GET manifest {repository}:{reference}: HTTP {status} {body[:200]!r}"
        return headers["Docker-Content-Digest"], json.loads(body)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _htpasswd_line(username: str, password: str) -> bytes:
    # -i reads the password from stdin: it never shows in a process listing, even in a test.
    result = subprocess.run(["htpasswd", "-niB", username], input=password.encode(), capture_output=True,
                            timeout=30)
    if result.returncode != 0:
        service_unavailable(f"htpasswd failed: {result.stderr.decode(errors='replace')}")
    return result.stdout.strip() + b"\n"


def _answers(host: str) -> bool:
    try:
        urllib.request.urlopen(f"http://{host}/v2/", timeout=1)
    except urllib.error.HTTPError as error:
        return error.code == 401  # up, and asking for credentials
    except OSError:
        return False
    return False


def _start(root: Path, binary: str) -> tuple[subprocess.Popen, str]:
    log_text = ""
    for _ in range(3):  # another process may take the free port before the registry binds it
        port = _free_port()
        config = root / "config.yml"
        config.write_text(_CONFIG.format(root=root, port=port, http_secret=secrets.token_hex(16)))
        with (root / "registry.log").open("wb") as log:
            server = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while server.poll() is None and time.monotonic() < deadline:
            if _answers(f"127.0.0.1:{port}"):
                return server, f"127.0.0.1:{port}"
            time.sleep(0.05)
        _stop(server)
        log_text = (root / "registry.log").read_text(errors="replace")[-800:]
    service_unavailable(f"docker-registry did not start: {log_text}")


def _stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@pytest.fixture(scope="session")
def docker_registry() -> Iterator[RegistryService]:
    """A registry on 127.0.0.1:<free port> that takes USERNAME and a random password (bcrypt htpasswd)."""
    binary = shutil.which("docker-registry") or shutil.which("registry")
    if binary is None or shutil.which("htpasswd") is None:
        service_unavailable("docker-registry and htpasswd are needed (apt-get install docker-registry apache2-utils)")
    root = Path(tempfile.mkdtemp(prefix="forgeyard-registry-"))
    password = f"reg-{secrets.token_urlsafe(18)}"
    (root / "htpasswd").write_bytes(_htpasswd_line(USERNAME, password))
    server = None
    try:
        server, host = _start(root, binary)
        yield RegistryService(host, USERNAME, password)
    finally:
        if server is not None:
            _stop(server)
        shutil.rmtree(root, ignore_errors=True)
