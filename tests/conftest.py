"""Fixtures shared by every test module; services are started by tests/services/ (imported here), not here."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner import database
from runner.database import peewee
from tests.services.dockerd import docker_engine, openwebui_base_image  # noqa: F401  (fixtures)
from tests.services.git_http import git_http  # noqa: F401  (a fixture)
from tests.services.openwebui_tree import (  # noqa: F401  (fixtures)
    checkout_stand_in_fixture,
    openwebui_repo_factory_fixture,
    openwebui_repo_fixture,
)
from tests.services.postgres import fresh_database, postgres_url  # noqa: F401  (postgres_url: a fixture)
from tests.services.registry import docker_registry  # noqa: F401  (a fixture)
from tests.services.sshd import git_sshd  # noqa: F401  (a fixture)
from tests.services.workers import fleet, pg  # noqa: F401  (fixtures)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A URL to an empty database of each backend; PostgreSQL starts only when a test needs it."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'forgeyard.db'}"
    return fresh_database(request.getfixturevalue("postgres_url"))


@pytest.fixture
def db(database_url: str) -> Iterator[peewee.Database]:
    """runner.database connected to `database_url`, migrated; closed after the test."""
    yield database.connect(database_url)
    database.close()


def _local_names() -> set[str]:
    names = {"localhost"}
    for line in Path("/etc/hosts").read_text().splitlines():
        names.update(line.split("#")[0].split()[1:])
    return names


@pytest.fixture(autouse=True, scope="session")
def no_dns_off_this_machine() -> Iterator[None]:
    """Tests talk to 127.0.0.1 only: a lookup of any name /etc/hosts does not hold fails instead of asking DNS."""
    real, local = socket.getaddrinfo, _local_names()

    def getaddrinfo(host, *args, **kwargs):
        text = host.decode() if isinstance(host, bytes) else host
        if text is not None and text.lower() not in local:
            try:
                ipaddress.ip_address(text.split("%")[0])
            except ValueError:
                raise socket.gaierror(socket.EAI_NONAME, f"tests resolve no name off this machine: {text}") from None
        return real(host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.getaddrinfo = real
