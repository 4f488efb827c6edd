"""A real `forgeyard serve` on a free loopback port with its own home and SQLite database; starts, stops, no tests.

Fixture `api_server` (module scope; a test module imports `api_server_fixture`) is the everyday instance;
`start_api_server` makes dedicated ones (a low rate limit, a server to kill -9 and start again on the same home).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosedOK
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from runner import database
from tests.services.gitrepos import make_remote

START_TIMEOUT = 30.0
TEST_RATE_LIMIT = "100000/minute"  # far above what a test sends; the 429 tests start their own server
PIPELINE_FILES = {
    # A stored pipeline for the `pipeline` form of POST /runs.
    "greet.yml": "name: greet\ninputs:\n  who:\n    type: string\n    default: world\n"
                 "jobs:\n  greet:\n    steps:\n      - run: echo \"hello ${{ inputs.who }}\"\n",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class ApiServer:
    """One `forgeyard serve` process and what a test needs to talk to it."""

    home: Path
    env: dict[str, str]
    port: int = 0
    workers: int = 2
    admin_token: str = ""
    process: subprocess.Popen | None = None
    _tokens: dict[str, str] = field(default_factory=dict)
    _clients: dict[str, httpx.Client] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/pipelines"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/pipelines"

    @property
    def database_url(self) -> str:
        return self.env["FORGEYARD_DATABASE_URL"]

    @property
    def log_path(self) -> Path:
        return self.home / "serve.log"

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin_token}"}

    def client(self, token: str | None = None) -> httpx.Client:
        """An httpx client on /api/pipelines with the token (default: admin); one per token, closed by stop()."""
        token = token or self.admin_token
        if token not in self._clients:
            self._clients[token] = httpx.Client(base_url=self.api_url, headers=self.headers(token), timeout=30.0,
                                                trust_env=False)
        return self._clients[token]

    def _close_clients(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def token(self, role: str) -> str:
        """A token of `role`, made once per server by `forgeyard token create` with the server's environment."""
        if role not in self._tokens:
            result = subprocess.run([sys.executable, "-m", "runner", "token", "create", "--name", f"test {role}",
                                     "--role", role], env=self.env, capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stderr
            self._tokens[role] = result.stdout.strip().splitlines()[-1]
        return self._tokens[role]

    def once(self, method: str, path: str, **options) -> httpx.Response:
        """One request under /api/pipelines on its own connection, as admin (uvicorn drops one that answered 500)."""
        return httpx.request(method, self.api_url + path, headers=self.headers(), trust_env=False, **options)

    def stream(self, run_id: int, *, query: str = "", headers: bool = True,
               on_message: Callable[[dict, ClientConnection], None] | None = None) -> tuple[list[dict], int | None]:
        """Every message of the run's WebSocket (admin token in the header, unless not `headers`) until the
        server closes it, and the close code; `on_message` sees each message as it arrives."""
        messages: list[dict] = []
        with ws_connect(f"{self.ws_url}/runs/{run_id}/ws{query}", additional_headers=self.headers() if headers
                        else None, proxy=None, open_timeout=10) as connection:
            with contextlib.suppress(ConnectionClosedOK):
                while True:
                    messages.append(json.loads(connection.recv(timeout=60)))
                    if on_message:
                        on_message(messages[-1], connection)
            return messages, connection.close_code

    @contextlib.contextmanager
    def database(self) -> Iterator[None]:
        """The server's own SQLite database, opened from the test process (runner.database)."""
        database.connect(self.database_url)
        try:
            yield
        finally:
            database.close()

    # -- process ------------------------------------------------------------------------------------------

    def start(self) -> ApiServer:
        """Start (or start again, on the same home and port) and wait for /api/health."""
        self.port = self.port or _free_port()
        argv = [sys.executable, "-m", "runner", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", str(self.workers)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"forgeyard serve exited with {self.process.returncode}:\n{self.log_tail()}")
            try:  # 429: up, and a test's low rate limit already spent on these polls
                health = httpx.get(f"{self.base_url}/api/health", timeout=1.0, trust_env=False)
                if health.status_code in (200, 429):
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError(f"forgeyard serve did not answer within {START_TIMEOUT} s:\n{self.log_tail()}")
        self.admin_token = self.admin_token or (self.home / "admin-token").read_text().strip()
        return self

    def __enter__(self) -> ApiServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to the server's process group (its steps' processes included)."""
        self._close_clients()
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def kill(self) -> None:
        """kill -9 the server process alone, as a crash would: no shutdown code runs."""
        assert self.process is not None
        self._close_clients()
        self.process.kill()
        self.process.wait(10)

    def kill_orphans(self) -> None:
        """SIGKILL what is left of the server's process group (step processes a killed server left behind)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""


def start_api_server(root: Path, *, rate_limit: str = TEST_RATE_LIMIT, workers: int = 2,
                     extra_env: dict[str, str] | None = None) -> ApiServer:
    """A started server whose home is `root/home`, whose official repository is a local bare repo in `root`."""
    home = root / "home"
    pipelines = root / "pipelines"
    pipelines.mkdir(parents=True, exist_ok=True)
    for name, text in PIPELINE_FILES.items():
        (pipelines / name).write_text(text)
    official = root / "official.git"
    if not official.exists():
        make_remote(root, "official", {"README.md": "# Open WebUI (test copy)\n", "backend/app.py": "print(1)\n"})
    env = {key: value for key, value in os.environ.items() if not key.startswith(("FORGEYARD_", "GIT_"))}
    env.update({
        "FORGEYARD_HOME": str(home),
        "FORGEYARD_DATABASE_URL": f"sqlite:///{home / 'forgeyard.db'}",
        "FORGEYARD_PIPELINES_DIR": str(pipelines),
        "FORGEYARD_OFFICIAL_REPO_URL": f"file://{official}",
        "FORGEYARD_ALLOW_LOCAL_REPOS": "1",
        # Private hosts allowed means host names are never resolved: no test may send a DNS query off this machine.
        # Tests of the address policy start their servers with "0" and only literal or /etc/hosts names.
        "FORGEYARD_ALLOW_PRIVATE_GIT_HOSTS": "1",
        "FORGEYARD_RATE_LIMIT": rate_limit,
        "FORGEYARD_KILL_GRACE": "1",
        "DOCKER_HOST": "unix:///nonexistent/forgeyard-tests-no-docker.sock",  # image steps fail fast, not hang
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    })
    home.mkdir(parents=True, exist_ok=True)
    return ApiServer(home=home, env=env, workers=workers).start()


@pytest.fixture(scope="module", name="api_server", params=["sqlite", "postgresql"])
def api_server_fixture(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A `forgeyard serve --workers 2` for the test module on each database, stopped at its end."""
    extra = {}
    if request.param == "postgresql":
        from tests.services.postgres import fresh_database

        extra["FORGEYARD_DATABASE_URL"] = fresh_database(request.getfixturevalue("postgres_url"))
    server = start_api_server(tmp_path_factory.mktemp("api-server"), extra_env=extra)
    try:
        yield server
    finally:
        server.stop()
