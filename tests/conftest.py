"""Fixtures shared by every test module; services are started by tests/services/ (imported here), not here."""

from __future__ import annotations

from collections.abc import Iterator

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
