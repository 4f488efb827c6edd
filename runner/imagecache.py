"""What an overlay reads out of a base image (files, history), kept by image id under FORGEYARD_CACHE_DIR/images.

An image id is the digest of the image's config, which names every layer: an entry never goes stale, and a later
rebrand of the same base needs no container and no `docker cp`. Only runner/steps/build_image.py uses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from runner import settings
from runner.docker import Docker


def _entry(image_id: str) -> Path:
    hexdigest = image_id.removeprefix("sha256:")
    if len(hexdigest) != 64 or not all(char in "0123456789abcdef" for char in hexdigest):
        raise ValueError(f"not an image id: {image_id!r}")
    return settings.cache_dir() / "images" / hexdigest


def files(docker: Docker, image_id: str, sources: list[str], scratch: Path, *, limit: int) -> dict[str, bytes]:
    """The contents of the files `sources` of the image `image_id` (Docker.copy_out's checks), from the cache if
    there, else copied out of it (one container for all) and kept."""
    entry = _entry(image_id)
    names = {source: hashlib.sha256(source.encode()).hexdigest() for source in sources}
    found = {source: _read(entry / name) for source, name in names.items()}
    missing = [source for source, data in found.items() if data is None]
    if missing:
        for source, path in docker.copy_out(image_id, missing, scratch, limit=limit).items():
            found[source] = path.read_bytes()
            _write(entry / names[source], found[source])
    return {source: data for source, data in found.items() if data is not None}


def history(docker: Docker, image_id: str) -> list[dict]:
    """Docker.history of the image `image_id`, from the cache if there, else asked for and kept."""
    path = _entry(image_id) / "history.json"
    data = _read(path)
    if data is not None:
        return json.loads(data)
    rows = docker.history(image_id)
    _write(path, json.dumps(rows).encode())
    return rows


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _write(path: Path, data: bytes) -> None:
    # Whole or not at all (a rename), so a run reading it beside another that writes it never sees half of it.
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor, staged = tempfile.mkstemp(prefix=".staged-", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.replace(staged, path)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise
