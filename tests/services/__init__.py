"""Helpers shared by the fixtures that start real services (PostgreSQL, dockerd, …); no fixtures here."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def service_unavailable(reason: str) -> NoReturn:
    """Skip the test for lack of a service, or fail it when FORGEYARD_REQUIRE_SERVICES=1.

    CI sets the variable: there a missing service is a broken build, not a reason to test less.
    """
    if os.environ.get("FORGEYARD_REQUIRE_SERVICES") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)
