"""Retention: removes expired ZIPs and local images (records marked) and old prepared checkouts; no registry image."""

from __future__ import annotations

import logging
from datetime import datetime

from runner import checkouts
from runner.artifacts import ArtifactKeyError, ArtifactStore, get_store
from runner.models import BuildOutput
from runner.timestamps import utcnow

log = logging.getLogger("forgeyard.cleanup")

# Registry images are the product people pull; they are never expired here (their records have no expiry).
CLEANED_TYPES = ("zip", "docker_image")
STAGING_MAX_AGE_SECONDS = 24 * 3600  # no ZIP takes a day to write: older staged files are a crashed writer's


def cleanup_expired(now: datetime | None = None) -> dict[str, int]:
    """Remove what expired before `now` (default: now, naive UTC) and mark those records cleaned.

    Idempotent and safe to run from several processes at once: a record counts once, for the run that
    marks it. A ZIP whose file is already gone counts as cleaned; an image that cannot be removed yet
    (in use, daemon down) stays unmarked and is tried again next time. Staged files that a crashed
    writer left in the store are removed too (not counted), and so are the prepared checkouts no clone has taken
    for a week and what a preparation that died left (runner.checkouts.prune).
    """
    now = now or utcnow()
    store = get_store()
    store.prune_staging(STAGING_MAX_AGE_SECONDS)
    checkouts.prune()
    counts = {"zip": 0, "docker_image": 0}
    expired = (BuildOutput.select()
               .where(BuildOutput.expires_at < now, BuildOutput.cleaned_at.is_null(),
                      BuildOutput.output_type.in_(CLEANED_TYPES))
               .order_by(BuildOutput.id))
    for output in list(expired):
        removed = _remove_file(store, output) if output.output_type == "zip" else _remove_image(output)
        if removed and _mark_cleaned(output, now):
            counts[output.output_type] += 1
    return {"total_cleaned": counts["zip"] + counts["docker_image"], "files_cleaned": counts["zip"],
            "images_cleaned": counts["docker_image"]}


def _remove_file(store: ArtifactStore, output: BuildOutput) -> bool:
    if not output.file_path:
        return True
    try:
        store.delete(output.file_path)  # False (already gone) is cleaned too
    except ArtifactKeyError:
        log.warning("build output %s: its file path is not an artifact key; marked cleaned", output.id)
    except OSError as error:
        log.warning("build output %s: cannot remove its file: %s", output.id, error.strerror)
        return False
    return True


def _remove_image(output: BuildOutput) -> bool:
    from runner import docker  # lazy: a ZIP-only installation never loads the docker seam

    # By id first: if a later build took the same name:tag, removing the tag would remove the new image.
    ref = output.image_id or output.image_url
    if not ref:
        return True
    try:
        return docker.remove_image(ref)
    except ValueError:  # a record holding no valid reference: nothing of ours to remove
        log.warning("build output %s: not an image reference; marked cleaned", output.id)
        return True
    except OSError as error:  # no docker binary
        log.warning("build output %s: cannot run docker: %s", output.id, error.strerror)
        return False


def _mark_cleaned(output: BuildOutput, now: datetime) -> bool:
    marked = (BuildOutput.update(cleaned_at=now)
              .where(BuildOutput.id == output.id, BuildOutput.cleaned_at.is_null())
              .execute())
    return marked == 1
