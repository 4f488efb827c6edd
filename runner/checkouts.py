"""Working trees made from the git cache for clone_repo: a fresh checkout, or a prepared one moved in by rename(2).

After each clone, once the job that cloned has ended (its later steps keep the machine to themselves), the next
checkout of the same URL and commit is prepared in the background, beside the bare cache in
FORGEYARD_CACHE_DIR/git/<cache>.trees/, under the name <commit>-<sha256 of the URL as written> (the URL is the
tree's origin): at most one per cache, the others dropped once it is ready. It is made under a .tmp-* name and
renamed to its own only when complete, so a preparation that dies leaves nothing a clone would take. A clone of
that same URL and commit renames it into its workspace — atomically, so two runs never get the same tree — and
relinks its objects from the cache, so the workspace holds exactly what a fresh checkout would. No credential is
ever written into a tree: they live in runner.git's private environment only.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from runner import gitcache, settings
from runner.git import Git, run_local
from runner.process import CancelToken

log = logging.getLogger("forgeyard.checkouts")

TEMP_PREFIX = ".tmp-"  # a tree being prepared or removed: never taken
PREPARE_TIMEOUT_SECONDS = 600.0  # per git command: writing a large tree on a loaded machine takes a while
PREPARED_MAX_AGE_SECONDS = 7 * 24 * 3600  # cleanup removes a prepared tree that no clone has taken for this long
PREPARE_NICENESS = 10  # a preparation is work done in advance: it gives way to the runs' own steps


@dataclass(frozen=True)
class Checkout:
    commit: str
    commit_time: int  # unix seconds (committer date)
    warm: bool  # the cache already held this repository's objects, so only new ones were fetched
    prepared: bool  # the tree was prepared after an earlier clone and moved in


def prepared_path(url: str, commit: str) -> Path:
    """Where the prepared checkout of `commit` of `url`, exactly as written, is kept once it is complete."""
    return _ready(gitcache.cache_path(url), url, commit)


def _ready(repo: Path, url: str, commit: str) -> Path:
    return _trees(repo) / f"{commit}-{hashlib.sha256(url.encode()).hexdigest()}"


def _trees(repo: Path) -> Path:
    return repo.with_suffix(".trees")


def checkout(url: str, ref: str, depth: int, target: Path, git: Git, should_stop: Callable[[], bool],
             cancel: CancelToken) -> Checkout:
    """Check `ref` of `url` out into the new folder `target` with at least `depth` commits (0: all) of history;
    then prepare the next checkout of that commit in the background, unless `cancel` (the job's) is cancelled by
    the time the job ends."""
    repo = gitcache.cache_path(url)
    with gitcache.locked(repo, should_stop):
        commit, warm = gitcache.fetch(repo, url, ref, depth, git)
        # Only now: the server has checked this run's credentials and named the commit.
        prepared = _take(_ready(repo, url, commit), target)
        if prepared:
            shutil.rmtree(target / ".git" / "objects")  # relinked below from the cache as it is now
        else:
            git("init", "-q", "--", str(target), cwd=target.parent, quiet=True)
        gitcache.copy_objects(repo, target / ".git")
    if not prepared:
        _check_out(git, url, commit, target)
    commit_time = git("log", "-1", "--format=%ct", "HEAD", cwd=target, quiet=True).splitlines()[-1]
    _prepare_later(repo, url, commit, target.parent, cancel)
    return Checkout(commit, int(commit_time), warm, prepared)


def _check_out(git: Callable[..., object], url: str, commit: str, tree: Path) -> None:
    """Give the new repository `tree`, its objects linked in, its remote and check `commit` out."""
    # The tree's own remote is the real URL (never with credentials), not the cache.
    git("remote", "add", "--", "origin", url, cwd=tree)
    git("checkout", "-q", "--detach", commit, cwd=tree)


def _take(tree: Path, target: Path) -> bool:
    """Move the prepared `tree` to `target` (absent or an empty folder); False when there is none (or another run
    took it) or it cannot be moved there (EXDEV: another file system), and the caller checks out afresh."""
    made_before = target.stat() if target.exists() else None
    try:
        os.rename(tree, target)
    except OSError:
        return False
    if made_before is not None:  # an empty folder made before keeps its mode, as it does through git init
        target.chmod(stat.S_IMODE(made_before.st_mode))
    return True


def _prepare_later(repo: Path, url: str, commit: str, workspaces: Path, cancel: CancelToken) -> None:
    trees = _trees(repo)
    try:
        trees.mkdir(exist_ok=True)
        if trees.stat().st_dev != workspaces.stat().st_dev:
            return  # rename(2) could never move it into a workspace
        # Not a daemon: a `forgeyard run` completes the tree before it exits rather than leaving half of one.
        threading.Thread(target=_prepare, args=(repo, url, commit, threading.current_thread(), cancel),
                         name="prepare checkout", daemon=False).start()
    except (OSError, RuntimeError) as error:  # RuntimeError: no new thread while the interpreter shuts down
        log.warning("could not prepare a checkout of %s: %s", commit, error)  # the clone itself succeeded


def _prepare(repo: Path, url: str, commit: str, job: threading.Thread, cancel: CancelToken) -> None:
    """Once `job` (the thread that cloned) has ended, make the prepared checkout of `commit` of `url` unless it is
    ready or another one is being made, then drop the cache's other prepared trees."""
    if not _outlived(job) or cancel.cancelled:  # an interrupted `forgeyard run` exits without waiting for it
        return
    ready = _ready(repo, url, commit)
    with contextlib.suppress(OSError):  # Linux keeps a nice value per thread; the git processes it starts inherit it
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PREPARE_NICENESS)
    try:
        with _exclusive(ready.parent) as held:
            if held and not ready.exists():
                _remove_temporaries(ready.parent)  # what a preparation that died left: none is running now
                if not _build(repo, url, commit, ready):
                    return
                for entry in ready.parent.iterdir():
                    if entry.name != ready.name and not entry.name.startswith(TEMP_PREFIX):
                        _drop(entry)
    except Exception as error:  # a background thread: the next clone simply checks out afresh
        log.warning("could not prepare a checkout of %s: %s", commit, error)


def _outlived(job: threading.Thread) -> bool:
    """Wait for `job` to end; False if this process is ending first (its main thread has stopped)."""
    while job.is_alive():
        job.join(1.0)
        if job.is_alive() and not threading.main_thread().is_alive():
            return False
    return True


def _build(repo: Path, url: str, commit: str, ready: Path) -> bool:
    """Check `commit` out into a temporary folder and rename it to `ready`; False if the cache is gone."""
    temp = ready.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}"

    def git(*args: str, cwd: Path) -> None:  # no remote, no credentials: the cache's objects are all it reads
        run_local(args, cwd, PREPARE_TIMEOUT_SECONDS)

    try:
        git("init", "-q", "--", str(temp), cwd=ready.parent)
        with gitcache.locked(repo, lambda: False):
            if not (repo / "HEAD").is_file():
                return False  # removed meanwhile by a fetch that failed
            gitcache.copy_objects(repo, temp / ".git")
        _check_out(git, url, commit, temp)
        os.rename(temp, ready)  # complete: only now can a clone take it
        return True
    finally:
        shutil.rmtree(temp, ignore_errors=True)  # what a failure left


@contextlib.contextmanager
def _exclusive(trees: Path) -> Iterator[bool]:
    """Whether this caller got the lock of the prepared-trees folder `trees`, held for the block: one preparer
    (or cleanup) at a time, so what .tmp-* folders it finds on entry are a dead preparation's."""
    descriptor = os.open(trees, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = True
        except BlockingIOError:
            held = False
        yield held
    finally:
        os.close(descriptor)  # closing the descriptor releases the lock


def _remove_temporaries(trees: Path) -> None:
    for entry in trees.iterdir():
        if entry.name.startswith(TEMP_PREFIX):
            shutil.rmtree(entry, ignore_errors=True)


def _drop(tree: Path) -> None:
    """Remove a prepared tree; renamed away first, so a clone taking it at that moment gets all of it or none."""
    doomed = tree.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
    try:
        os.rename(tree, doomed)
    except FileNotFoundError:
        return  # a clone took it
    shutil.rmtree(doomed, ignore_errors=True)


def prune(max_age_seconds: float = PREPARED_MAX_AGE_SECONDS) -> None:
    """Remove what dead preparations left and the prepared trees no clone has taken for `max_age_seconds`."""
    oldest = time.time() - max_age_seconds
    for trees in (settings.cache_dir() / "git").glob("*.trees"):
        try:
            with _exclusive(trees) as held:
                if not held:
                    continue  # being prepared: its preparer removes what a dead one left
                _remove_temporaries(trees)
                for entry in trees.iterdir():
                    with contextlib.suppress(FileNotFoundError):  # a clone took it meanwhile
                        if entry.stat().st_mtime < oldest:
                            _drop(entry)
        except OSError as error:  # the rest of the cleanup goes on; the next one tries again
            log.warning("cannot prune the prepared checkouts in %s: %s", trees, error.strerror)
