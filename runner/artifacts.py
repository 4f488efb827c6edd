"""The artifact store (built ZIPs) behind one small interface; it never takes a name or key from a request.

Keys are made here (`<random folder>/<file name>`) and stored on build-output records; the API looks an
artifact up by its record, never by URL text. An object-store backend implements ArtifactStore and is
chosen in get_store(); steps and cleanup only use the interface.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from runner import settings

STAGING = ".staging"  # temp files being written, on the store's own disk so that put() is a rename
FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,199}")


class ArtifactKeyError(LookupError):
    """A key that does not name an artifact of this store (malformed, or outside it)."""


class ArtifactStore(Protocol):
    def staging_file(self, suffix: str = "") -> contextlib.AbstractContextManager[Path]:
        """A new, empty local file to write an artifact into; removed on exit unless put() took it."""
        ...

    def put(self, temp_file: Path, name: str) -> str:
        """Move a staged file into the store under a new key ending in `name`, atomically; return the key."""
        ...

    def open(self, key: str) -> BinaryIO: ...

    def size(self, key: str) -> int: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> bool:
        """Remove the artifact; False if it was already gone."""
        ...

    def locate(self, key: str) -> str:
        """Where people and later steps find it: an absolute path here, a URL for an object store."""
        ...

    def prune_staging(self, older_than: float) -> int:
        """Remove staged files older than `older_than` seconds (left by a crashed writer); return how many."""
        ...


class LocalArtifactStore:
    """Artifacts as files under `root` (FORGEYARD_ARTIFACT_DIR): a shared folder when many machines run."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root if root is not None else settings.artifact_dir())

    @contextlib.contextmanager
    def staging_file(self, suffix: str = "") -> Iterator[Path]:
        staging = settings.ensure_dir(self.root / STAGING)
        path = staging / f"{secrets.token_hex(8)}{suffix}.partial"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        os.close(fd)
        try:
            yield path
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def put(self, temp_file: Path, name: str) -> str:
        if not FILE_NAME.fullmatch(name):
            raise ArtifactKeyError(f"not a plain file name: {name!r}")
        key = f"{secrets.token_hex(8)}/{name}"  # a fresh folder: equal names of other runs never collide
        target = self._path(key)
        target.parent.mkdir(mode=0o755, parents=True)
        with open(temp_file, "rb+") as staged:
            os.fsync(staged.fileno())  # the data is on disk before the name is, so a crash never shows a stub
        os.rename(temp_file, target)
        _fsync_dir(target.parent)
        return key

    def open(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> bool:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        with contextlib.suppress(OSError):  # the key's own folder, if now empty
            path.parent.rmdir()
        return True

    def locate(self, key: str) -> str:
        return str(self._path(key))

    def prune_staging(self, older_than: float) -> int:
        cutoff, removed = time.time() - older_than, 0
        with contextlib.suppress(FileNotFoundError), os.scandir(self.root / STAGING) as staged:
            for item in staged:
                if item.is_file(follow_symlinks=False) and item.stat(follow_symlinks=False).st_mtime < cutoff:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(item.path)
                        removed += 1
        return removed

    def _path(self, key: str) -> Path:
        """The file of `key`, refused unless it is a `folder/name` key that resolves inside the root."""
        parts = key.split("/") if isinstance(key, str) else []
        if len(parts) != 2 or not all(FILE_NAME.fullmatch(part) for part in parts):
            raise ArtifactKeyError("not an artifact key")
        root = os.path.realpath(self.root)
        path = os.path.realpath(os.path.join(root, key))
        if os.path.commonpath([root, path]) != root:  # a symlinked folder pointing out of the store
            raise ArtifactKeyError("not an artifact key")
        return Path(path)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def get_store() -> ArtifactStore:
    """The store configured for this process (read each call: settings may differ between tests)."""
    return LocalArtifactStore()
