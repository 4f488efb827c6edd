"""A smart-HTTP git server for the test session (fixture git_http): `git http-backend` behind basic auth on loopback.

Plain http, because the test machine has no certificate authority; Forgeyard accepts http:// remotes only when
FORGEYARD_ALLOW_HTTP_GIT=1, which only the tests set. Never reaches another address.
"""

from __future__ import annotations

import base64
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.services import service_unavailable

BACKEND = "/usr/lib/git-core/git-http-backend"
USERNAME = "forgeyard"
# Path prefixes choose how the server answers:
#   /git/…       normal, behind basic auth
#   /slow/…      as /git/, after waiting `delay` seconds (to look at the client's processes meanwhile)
#   /redirect/…  302 to http://localhost:PORT/canary/… — a client that follows it shows up in `requests`
#   /canary/…    as /git/ (the target of /redirect/)
MODES = ("git", "slow", "redirect", "canary")


@dataclass
class GitHttpServer:
    root: Path  # bare repositories served, by file name (`acme.git` → /git/acme.git)
    port: int
    hang_port: int  # accepts TCP connections and never answers
    token: str
    username: str = USERNAME
    delay: float = 0.5
    requests: list[str] = field(default_factory=list)  # "MODE /path" of every request received

    def url(self, name: str, mode: str = "git") -> str:
        return f"http://127.0.0.1:{self.port}/{mode}/{name}"

    def hang_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.hang_port}/git/{name}"


def _handler(server: GitHttpServer) -> type[BaseHTTPRequestHandler]:
    expected = base64.b64encode(f"{server.username}:{server.token}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet: pytest shows failures, not every request
            pass

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            mode, _, rest = self.path.lstrip("/").partition("/")
            if mode not in MODES:
                self.send_error(404)
                return
            server.requests.append(f"{mode} /{rest}")
            scheme, _, credentials = (self.headers.get("Authorization") or "").partition(" ")
            if scheme.lower() != "basic" or credentials != expected:  # the scheme is case-insensitive
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="forgeyard tests"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if mode == "redirect":
                self.send_response(302)
                self.send_header("Location", f"http://localhost:{server.port}/canary/{rest}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if mode == "slow":
                time.sleep(server.delay)
            self._backend(rest)

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = bytearray()  # git sends bodies over http.postBuffer (1 MiB) chunked
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return bytes(body)

        def _backend(self, rest: str) -> None:
            path, _, query = rest.partition("?")
            env = {"GIT_PROJECT_ROOT": str(server.root), "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": "/" + path,
                   "QUERY_STRING": query, "REQUEST_METHOD": self.command, "REMOTE_USER": server.username,
                   "REMOTE_ADDR": self.client_address[0], "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                   "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                   "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                   "PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(server.root)}
            body = self._body()
            env["CONTENT_LENGTH"] = str(len(body))
            result = subprocess.run([BACKEND], input=body, env=env, capture_output=True, timeout=60)
            head, _, payload = result.stdout.partition(b"\r\n\r\n")
            headers = [line.split(": ", 1) for line in head.decode("latin-1").split("\r\n") if ": " in line]
            status = next((int(value.split()[0]) for name, value in headers if name.lower() == "status"), 200)
            self.send_response(status)
            for name, value in headers:
                if name.lower() != "status":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


@pytest.fixture(scope="session")
def git_http() -> Iterator[GitHttpServer]:
    if not Path(BACKEND).exists() or shutil.which("git") is None:
        service_unavailable(f"git smart-HTTP backend not found at {BACKEND}")
    root = Path(tempfile.mkdtemp(prefix="forgeyard-git-http-"))
    hang = socket.create_server(("127.0.0.1", 0), backlog=16)  # never accept()ed: the kernel completes handshakes
    try:
        server = GitHttpServer(root=root, port=0, hang_port=hang.getsockname()[1], token=secrets.token_hex(16))
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
        httpd.daemon_threads = True
        server.port = httpd.server_address[1]
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield server
        finally:
            httpd.shutdown()
            httpd.server_close()
            thread.join()
    finally:
        hang.close()
        shutil.rmtree(root, ignore_errors=True)
