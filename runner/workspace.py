"""A run's folders on disk: one workspace per run, a sub-folder per job, and private scratch space for the engine."""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path

SCRATCH = ".forgeyard"  # scripts and command files; never inside a job folder, so artifacts cannot pick them up


class RunWorkspace:
    def __init__(self, root: Path, *, keep: bool = False):
        self.root = Path(root).resolve()
        self.keep = keep
        self.root.mkdir(parents=True, exist_ok=True)

    def job_dir(self, folder: str) -> Path:
        path = self.root / folder
        path.mkdir(parents=True, exist_ok=True)
        return path

    def scratch_dir(self, folder: str) -> Path:
        path = self.root / SCRATCH / folder
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def cleanup(self) -> None:
        """Remove the workspace unless it is to be kept; the engine's scratch space always goes."""
        target = self.root / SCRATCH if self.keep else self.root
        if sys.version_info >= (3, 12):
            shutil.rmtree(target, onexc=_make_writable_and_retry)
        else:
            shutil.rmtree(target, onerror=_make_writable_and_retry)


def _make_writable_and_retry(function, path, _exc) -> None:
    # Steps may leave read-only folders behind (git objects, chmod -w); the workspace is ours to remove.
    if not os.path.exists(path):
        return
    parent = os.path.dirname(path)
    os.chmod(parent, os.stat(parent).st_mode | stat.S_IWUSR | stat.S_IXUSR)
    if os.path.isdir(path) and not os.path.islink(path):
        os.chmod(path, os.stat(path).st_mode | stat.S_IWUSR | stat.S_IXUSR | stat.S_IRUSR)
    function(path)
