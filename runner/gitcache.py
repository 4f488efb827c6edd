"""Bare git caches, one per repository URL: where they live, their lock, fetching into them and linking their objects
into a repository. runner.checkouts makes working trees from them; nothing else writes them.

A cache lives at FORGEYARD_CACHE_DIR/git/<sha256 of the normalised URL>.git and is locked (flock on its sibling
.lock file) while it is fetched into or copied from, so concurrent runs of one repository are safe. The first
fetch takes only the depth asked for (as fast as `git clone --depth N`); later ones bring only new objects.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from runner import settings
from runner.git import Git, GitError

LOCK_POLL_SECONDS = 0.05
_NO_LINK = (errno.EXDEV, errno.EPERM, errno.EMLINK)  # another file system, or links not allowed: copy instead


def normalise_url(url: str) -> str:
    """The URL with a lower-case scheme and host and without a trailing '/' or '.git': one cache per repository."""
    text = url.rstrip("/")
    text = text.removesuffix(".git")
    scheme, separator, rest = text.partition("://")
    if not separator:
        return text
    host, slash, path = rest.partition("/")
    return f"{scheme.lower()}://{host.lower()}{slash}{path}"


def cache_path(url: str) -> Path:
    return settings.cache_dir() / "git" / f"{hashlib.sha256(normalise_url(url).encode()).hexdigest()}.git"


@contextlib.contextmanager
def locked(repo: Path, should_stop: Callable[[], bool]) -> Iterator[None]:
    """Hold the cache's lock; polls, so a cancelled or timed-out step stops waiting for another run's fetch."""
    repo.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(repo.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if should_stop():
                    raise GitError("stopped while waiting for another clone of the same repository",
                                   "lock_wait") from None
                time.sleep(LOCK_POLL_SECONDS)
        yield
    finally:
        os.close(descriptor)  # closing the descriptor releases the lock


def fetch(repo: Path, url: str, ref: str, depth: int, git: Git) -> tuple[str, bool]:
    """Bring `ref` of `url` into the cache `repo` (made if missing) and return its commit and whether the cache
    already held objects (warm: only new ones were fetched). The caller holds the cache's lock."""
    if not (repo / "HEAD").is_file():  # new, or its creation was interrupted
        shutil.rmtree(repo, ignore_errors=True)
        git("init", "-q", "--bare", "--", str(repo), cwd=repo.parent, quiet=True)
    warm = _holds_objects(repo)
    try:
        return _fetch(repo, url, ref, depth, warm, git), warm
    except GitError as error:
        # Killed mid-fetch (stale lock files) or out of space (tmp_pack_* files that keep the disk full).
        if error.code in ("git_timeout", "cancelled", "no_space"):
            shutil.rmtree(repo, ignore_errors=True)  # a cold cache next time is better than a broken one
        raise


def _holds_objects(repo: Path) -> bool:
    objects = repo / "objects"
    return any(objects.glob("pack/*.pack")) or any(objects.glob("[0-9a-f][0-9a-f]/*"))


def _fetch(repo: Path, url: str, ref: str, depth: int, warm: bool, git: Git) -> str:
    """Bring `ref` into the cache (under a ref of its own, so gc keeps it) and return its commit.

    The server is asked every time, even for a commit the cache holds: that is what checks the credentials,
    so a run cannot read another run's private repository out of the cache.
    """
    shallow = (repo / "shallow").exists()
    if depth and (shallow or not warm):
        history = ["--depth", str(depth)]
    elif not depth and shallow:
        history = ["--unshallow"]
    else:
        history = []  # a complete cache (or a full first fetch): the server sends only what is missing
    key = f"refs/forgeyard/{hashlib.sha256(ref.encode()).hexdigest()[:24]}"
    git(f"--git-dir={repo}", "fetch", "--no-tags", "--no-write-fetch-head", *history, "--end-of-options",
        url, f"+{ref}:{key}", cwd=repo)
    return git(f"--git-dir={repo}", "rev-parse", "--verify", f"{key}^{{commit}}", cwd=repo, quiet=True).split()[-1]


def copy_objects(cache: Path, git_dir: Path) -> None:
    """Hard-link (across file systems: copy) the cache's objects and shallow list into the repository `git_dir`,
    whose objects folder is new or empty. The caller holds the cache's lock.

    What `git clone --local` does, which git refuses for a shallow source. The links keep the checkout whole
    whatever happens to the cache later: a repack or prune removes the cache's names, not these files.
    """
    source = cache / "objects"
    for folder, _, files in os.walk(source):
        destination = git_dir / "objects" / Path(folder).relative_to(source)
        destination.mkdir(exist_ok=True)
        for name in files:
            _link_or_copy(Path(folder) / name, destination / name)
    if (cache / "shallow").exists():
        shutil.copyfile(cache / "shallow", git_dir / "shallow")
    else:  # a prepared tree made from a cache that has since been unshallowed
        (git_dir / "shallow").unlink(missing_ok=True)


def _link_or_copy(source: Path, destination: Path) -> None:
    try:
        os.link(source, destination)
    except OSError as error:
        if error.errno not in _NO_LINK:
            raise
        shutil.copy2(source, destination)
