"""Built-in step create_zip: the checked-out tree as a reproducible ZIP in the artifact store, recorded on the run.

It never writes into the tree, never follows a symlink out of it, and leaves no partial file in the store.
"""

from __future__ import annotations

import errno
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from runner.artifacts import FILE_NAME, ArtifactStore, get_store
from runner.steps import BuiltinStep, StepContext, StepFailed
from runner.timestamps import utcnow
from runner.ziparchive import MIN_TIMESTAMP, ArchiveResult, clamp_timestamp, write_archive
from runner.ziptree import ArchiveError

KEY = "create_zip"
ZIP_EXPIRY = timedelta(days=7)
DEFAULT_MAX_ARTIFACT_BYTES = 20 * 1024 ** 3
DEFAULT_NAME = "open_webui_custom_%Y%m%d_%H%M%S.zip"  # strftime, in UTC


def run(context: StepContext) -> dict[str, Any]:
    clone = context.state.get("clone_repo")
    if not clone:
        raise StepFailed(f"{KEY} needs clone_repo earlier in this job")
    tree = Path(clone["path"])
    if not tree.is_dir():
        raise StepFailed(f"{KEY}: the checked-out tree is gone from the workspace")
    created = utcnow()
    name = context.inputs.get("name") or created.strftime(DEFAULT_NAME)
    if not (name.endswith(".zip") and FILE_NAME.fullmatch(name)):
        raise StepFailed(f"invalid ZIP name {name!r}: a plain file name ending in .zip (letters, digits, '_', "
                         "'.', '+', '-'; not starting with '.' or '-')")
    timestamp, origin = _timestamp(context, clone)
    level, include_git = context.inputs.get("level", 6), bool(context.inputs.get("include_git"))
    context.log(f"Creating {name}: level {level}, {'with' if include_git else 'without'} .git, "
                f"every entry dated {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(timestamp))} UTC ({origin})")
    store = get_store()
    result, key = _write(context, store, tree, name, level=level, timestamp=timestamp, include_git=include_git)
    try:
        output_id = context.record_output(
            "zip", file_path=key, file_size_bytes=result.size, checksum_sha256=result.sha256,
            expires_at=created + ZIP_EXPIRY,
            metadata={"name": name, "entries": result.entries, "tree_bytes": result.tree_bytes,
                      "skipped": result.skipped, "level": level, "include_git": include_git,
                      "timestamp": timestamp, "commit": clone.get("commit"), "url": clone.get("url")})
    except Exception:
        store.delete(key)  # an artifact no record points to would never expire
        raise
    context.log(f"ZIP {name}: {result.entries} entries, {result.size} bytes, sha256 {result.sha256}")
    return {"path": store.locate(key), "sha256": result.sha256, "size": result.size,
            "output_id": "" if output_id is None else output_id}


def _write(context: StepContext, store: ArtifactStore, tree: Path, name: str,
           **options: Any) -> tuple[ArchiveResult, str]:
    """Write the archive to a staging file of the store and move it in; nothing is left behind on failure."""
    try:
        with store.staging_file(".zip") as staged:
            with open(staged, "wb", buffering=1 << 20) as out:
                result = write_archive(tree, out, max_bytes=_max_artifact_bytes(), on_skip=context.log,
                                       should_stop=lambda: _stopped(context), **options)
            return result, store.put(staged, name)
    except ArchiveError as error:
        raise _failed(str(error), error.code) from None
    except OSError as error:  # strerror only: the message must not show server paths
        if error.errno == errno.ENOSPC:
            raise _failed("no space left on the artifact disk; nothing was kept", "no_space") from None
        raise _failed(f"cannot write the ZIP: {error.strerror or type(error).__name__}", "archive_failed") from None


def _failed(message: str, code: str) -> StepFailed:
    return StepFailed(message, code)


def _stopped(context: StepContext) -> bool:
    """Cancelled, or past the step's deadline (then reported as timed out, as for a process)."""
    if context.cancel.cancelled:
        return True
    if context.deadline is not None and time.monotonic() >= context.deadline:
        context.timed_out = True
        return True
    return False


def _timestamp(context: StepContext, clone: dict[str, Any]) -> tuple[int, str]:
    """Every entry's time: SOURCE_DATE_EPOCH if set, else the commit's time; clamped to what ZIP can hold."""
    epoch = context.env.get("SOURCE_DATE_EPOCH") or os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        if not epoch.isdigit():
            raise StepFailed(f"SOURCE_DATE_EPOCH must be whole seconds since 1970, got {epoch!r}")
        return clamp_timestamp(int(epoch)), "SOURCE_DATE_EPOCH"
    if clone.get("commit_time") is not None:
        return clamp_timestamp(int(clone["commit_time"])), "commit time"
    return MIN_TIMESTAMP, "no commit time known: 1980-01-01"


def _max_artifact_bytes() -> int:
    value = os.environ.get("FORGEYARD_MAX_ARTIFACT_BYTES")
    if not value:
        return DEFAULT_MAX_ARTIFACT_BYTES
    if not value.isdigit():
        raise StepFailed("FORGEYARD_MAX_ARTIFACT_BYTES must be a number of bytes")
    return int(value)


STEP = BuiltinStep(KEY, "Create ZIP Archive", "Package customizations into a ZIP file", 4, False, run,
                   requires=("clone_repo",))
