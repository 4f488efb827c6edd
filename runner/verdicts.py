"""Cached verdicts of pipeline validation: a valid text's data and warnings, kept so that a known file skips PyYAML,
JSON Schema and the linter (half a second at start-up); it validates nothing itself.

A verdict is stored in `<cache dir>/verdicts/<key>.json`; the key is the sha256 of everything validation reads:
the text; Forgeyard's code and schemas (each file's name, size and mtime, as Python's own bytecode cache checks);
the installed packages (a site-packages folder's mtime changes when a package is added, removed or upgraded);
the Python version; and the FORGEYARD_* settings (the git URL policy…) except credentials, which no check may read.
Validation must stay a function of these: a check that reads a file or another variable has to add it here.
Only valid texts are stored: an invalid one is validated in full every time, so its diagnostics are always the
validator's own. The folder may be deleted at any time; it is pruned to the newest MAX_VERDICTS.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from functools import cache
from pathlib import Path
from typing import Any

from runner import settings
from schemas import SCHEMA_DIR

FORMAT = 1  # bump when what a verdict holds changes
MAX_VERDICTS = 512
_CODE_DIRS = (Path(__file__).resolve().parent, Path(__file__).resolve().parent / "steps", SCHEMA_DIR,
              SCHEMA_DIR / "steps")
_PRIVATE_SETTINGS = ("FORGEYARD_SECRET_", "FORGEYARD_TOKEN", "FORGEYARD_DATABASE_URL")

WarningRow = tuple[int, int, str, str, str, str]  # a Diagnostic but its file: line, col, path, code, severity, message


def lookup(text: str) -> tuple[Any, list[WarningRow]] | None:
    """(data, warnings) of `text` when a verdict says it is valid, else None."""
    try:
        with open(_folder() / f"{_key(text)}.json", "rb") as file:
            verdict = json.load(file)
        return verdict["data"], [tuple(warning) for warning in verdict["warnings"]]
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or unreadable: validate again
        return None


def store(text: str, data: Any, warnings: list[WarningRow]) -> None:
    """Keep the verdict that `text` is valid, with its data and warnings."""
    import tempfile

    folder, temporary = _folder(), None
    try:
        folder.parent.mkdir(exist_ok=True)  # never creates FORGEYARD_HOME itself: a bare `validate` leaves no trace
        folder.mkdir(mode=0o700, exist_ok=True)  # the data holds whatever the pipeline file holds
        descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
        with os.fdopen(descriptor, "w") as file:
            json.dump({"data": data, "warnings": warnings}, file)
        os.replace(temporary, folder / f"{_key(text)}.json")  # readers see a whole verdict or none
        _prune(folder)
    except OSError:  # a cache that cannot be written only costs time
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


def _folder() -> Path:
    return settings.cache_dir() / "verdicts"


def _key(text: str) -> str:
    environment = "\0".join(f"{name}={value}" for name, value in sorted(os.environ.items())
                             if name.startswith("FORGEYARD_") and not name.startswith(_PRIVATE_SETTINGS))
    digest = hashlib.sha256(_installation())  # the settings are read every time: a test or a server may change them
    digest.update(environment.encode("utf-8", "surrogateescape") + b"\0" + text.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


@cache
def _installation() -> bytes:
    """The code, schemas, packages and Python that validate (see the module docstring), read once per process."""
    parts = [f"{FORMAT} {sys.hexversion}"]
    for folder in _CODE_DIRS:
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.name.endswith((".py", ".json")):
                    stat = entry.stat()
                    parts.append(f"{entry.path} {stat.st_size} {stat.st_mtime_ns}")
    parts += [f"{path} {os.stat(path).st_mtime_ns}" for path in sys.path if path.endswith("-packages")
              and os.path.isdir(path)]
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogateescape")).digest()


def _prune(folder: Path) -> None:
    with os.scandir(folder) as entries:
        verdicts = [entry for entry in entries if entry.name.endswith(".json")]
    if len(verdicts) > MAX_VERDICTS:
        verdicts.sort(key=lambda entry: entry.stat().st_mtime_ns)
        for entry in verdicts[:len(verdicts) - MAX_VERDICTS * 3 // 4]:
            Path(entry.path).unlink(missing_ok=True)
