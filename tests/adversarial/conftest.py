"""Shared tools of the adversarial suite: canaries, markers, a leak search over every output, a dedicated server.

Conventions of ../shared/security-catalogue.md: a **marker** is a file an injected command would create (the
test asserts it never appears); a **canary** is a unique fake secret the test searches for in every output.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.services.api_server import ApiServer, start_api_server

MARKER_NAME = "pwned"

# The property tests' settings, applied per test (@FUZZ), not loaded globally: schemathesis keeps its own.
# FORGEYARD_FUZZ_EXAMPLES raises the count for a longer search; no example database is written into the checkout.
FUZZ = settings(max_examples=int(os.environ.get("FORGEYARD_FUZZ_EXAMPLES", "300")), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def make_canary(label: str = "CANARY") -> str:
    """A fake secret that nothing else could print by chance (long enough to be masked safely)."""
    return f"{label}{secrets.token_hex(12)}"


def _texts_of(path: Path) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of a file, and of every member when it is a ZIP (compressed bytes hide a canary)."""
    data = path.read_bytes()
    yield str(path), data
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                yield f"{path}!{info.filename}", archive.read(info) + info.filename.encode()


def leaks(canary: str, *roots: Path, texts: tuple[str | bytes, ...] = ()) -> list[str]:
    """Where `canary` appears: files under `roots` (ZIP members included) and the given response texts."""
    needle = canary.encode()
    found = [f"text #{i}" for i, text in enumerate(texts)
             if needle in (text if isinstance(text, bytes) else text.encode())]
    for root in roots:
        for folder, _dirs, files in os.walk(root):
            for name in files:
                path = Path(folder) / name
                if path.is_symlink() or not path.is_file():
                    continue
                found += [where for where, data in _texts_of(path) if needle in data]
    return found


def markers(*roots: Path) -> list[Path]:
    """Every file named like the marker under `roots` (an injected `touch pwned` lands in its cwd)."""
    return [Path(folder) / MARKER_NAME for root in roots for folder, _dirs, files in os.walk(root)
            if MARKER_NAME in files]


def validate_refused(files: list[Path], **env: str) -> list[str]:
    """`python -m runner validate FILE…` (with `env` over a clean FORGEYARD_* environment) exits 2 and prints only
    FILE:LINE:COL: message lines, which it returns."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("FORGEYARD_")}
    result = subprocess.run([sys.executable, "-m", "runner", "validate", *map(str, files)], env={**clean, **env},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result
    lines = (result.stdout + result.stderr).splitlines()
    names = "|".join(re.escape(str(file)) for file in files)
    assert lines and all(re.match(rf"({names}):\d+:\d+: \S", line) for line in lines), lines
    return lines


def run_count(server: ApiServer) -> int:
    response = server.client().get("/runs", params={"limit": 1})
    assert response.status_code == 200, response.text
    return response.json()["total"]


@pytest.fixture(scope="module")
def adversary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A `forgeyard serve` on SQLite for one test module of attacks; its whole tree is searched for leaks."""
    with start_api_server(tmp_path_factory.mktemp("adversary")) as server:
        yield server
