"""A private PostgreSQL cluster for the test session (fixture postgres_url); never touches another server."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import psycopg2
import pytest

from tests.services import service_unavailable

BINARIES = ("initdb", "pg_ctl", "postgres")
SERVER_USER = "nobody"  # PostgreSQL refuses to run as root; nobody exists everywhere
SUPERUSER = "forgeyard"

_database_numbers = itertools.count(1)


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", SERVER_USER, "--", *argv] if os.geteuid() == 0 else argv


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(_as_server_user(argv), cwd=cwd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as error:  # e.g. no runuser: reported like a failed command
        return subprocess.CompletedProcess(argv, 1, "", str(error))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-800:] if path.exists() else ""


def _start(root: Path, data: Path) -> int:
    """Start the server on a free loopback port (retrying if another process grabs it); return the port."""
    log = root / "server.log"
    for _ in range(3):
        port = _free_port()
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        result = _run(["pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w", "start"], root)
        if result.returncode == 0:
            return port
    service_unavailable(f"PostgreSQL did not start: {result.stderr.strip()} {_tail(log)}")


def execute(url: str, sql: str) -> None:
    """Run one statement outside a transaction (CREATE DATABASE refuses to run inside one)."""
    with closing(psycopg2.connect(url)) as connection:
        connection.autocommit = True
        connection.cursor().execute(sql)


def fresh_database(server_url: str) -> str:
    """Create an empty database on the session's cluster and return its URL: a clean schema per test."""
    name = f"fy_{next(_database_numbers)}"
    execute(server_url, f"CREATE DATABASE {name}")
    return f"{server_url.rsplit('/', 1)[0]}/{name}"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    missing = [name for name in BINARIES if shutil.which(name) is None]
    if missing:
        service_unavailable(f"PostgreSQL binaries not on PATH: {', '.join(missing)}")
    root = Path(tempfile.mkdtemp(prefix="forgeyard-pg-"))
    data = root / "data"
    try:
        if os.geteuid() == 0:
            shutil.chown(root, SERVER_USER)
        init = _run(["initdb", "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                     "--locale=C", "--no-sync"], root)
        if init.returncode != 0:
            service_unavailable(f"initdb failed: {init.stderr.strip()}")
        port = _start(root, data)
        server = f"postgresql://{SUPERUSER}@127.0.0.1:{port}"
        execute(f"{server}/postgres", f"CREATE DATABASE {SUPERUSER}")
        yield f"{server}/{SUPERUSER}"
    finally:
        if (data / "postmaster.pid").exists():
            _run(["pg_ctl", "-D", str(data), "-m", "immediate", "stop"], root)
        shutil.rmtree(root, ignore_errors=True)
