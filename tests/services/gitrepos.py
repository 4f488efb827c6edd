"""Helpers that make small git repositories with commits, tags and bare remotes for tests; no fixtures, no network."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

COMMIT_TIME = 1_700_000_000  # first commit's date; each later commit is one minute later (reproducible shas)

_IDENTITY = {"GIT_AUTHOR_NAME": "Forgeyard Tests", "GIT_AUTHOR_EMAIL": "tests@forgeyard.invalid",
             "GIT_COMMITTER_NAME": "Forgeyard Tests", "GIT_COMMITTER_EMAIL": "tests@forgeyard.invalid"}


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run the test machine's git (not Forgeyard's hardened seam) and return its stdout, stripped."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    # Ignore the machine's own git configuration, so a developer's settings cannot change the test repositories.
    base.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, **_IDENTITY, **(env or {}))
    result = subprocess.run(["git", *args], cwd=cwd, env=base, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def bare_repo(path: Path) -> Path:
    """An empty bare repository at `path`, as a server would hold it."""
    git("init", "-q", "--bare", "-b", "main", str(path))
    return path


class WorkRepo:
    """A non-bare repository in which a test makes commits and tags, then pushes them to bare remotes."""

    def __init__(self, path: Path):
        self.path = path
        self._commits = 0
        git("init", "-q", "-b", "main", str(path))

    def git(self, *args: str, env: dict[str, str] | None = None) -> str:
        return git(*args, cwd=self.path, env=env)

    def commit(self, files: dict[str, str | bytes | None], message: str = "change") -> str:
        """Write (or, for None, delete) `files`, commit them all and return the new commit's sha."""
        for name, content in files.items():
            target = self.path / name
            if content is None:
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        when = f"@{COMMIT_TIME + 60 * self._commits} +0000"
        self._commits += 1
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message,
                 env={"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when})
        return self.head()

    def head(self, ref: str = "HEAD") -> str:
        return self.git("rev-parse", f"{ref}^{{commit}}")

    def tag(self, name: str, message: str = "release") -> None:
        """An annotated tag at HEAD, as releases are."""
        self.git("tag", "-a", name, "-m", message)

    def push(self, remote: Path, *refs: str) -> None:
        self.git("push", "-q", "--force", str(remote), *(refs or ("--all",)))
        if not refs:
            self.git("push", "-q", "--force", str(remote), "--tags")


def make_remote(root: Path, name: str, files: dict[str, str | bytes | None] | None = None) -> tuple[WorkRepo, Path]:
    """A work repository with one commit of `files` (default: a README) pushed to the bare `root/<name>.git`."""
    work = WorkRepo(root / f"{name}-work")
    work.commit(files or {"README.md": f"# {name}\n"}, "initial commit")
    remote = bare_repo(root / f"{name}.git")
    work.push(remote)
    return work, remote


def object_count(repo: Path) -> int:
    """How many objects (loose and packed) the repository (bare or its .git folder) holds."""
    counts = dict(line.split(": ", 1) for line in git(f"--git-dir={repo}", "count-objects", "-v").splitlines())
    return int(counts["count"]) + int(counts["in-pack"])
