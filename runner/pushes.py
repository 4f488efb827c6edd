"""What a push means: its ref updates, the `.forgeyard/*.yml` pipelines at each pushed commit whose filters match,
and the runs queued for them. Reads git objects only (never a work tree) and never executes a run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import git, queue
from runner.diagnostics import DiagnosticError
from runner.models import Run
from runner.spec import Spec, load_spec
from runner.triggers import PushEvent, match_push
from runner.yamlsource import MAX_BYTES

PIPELINE_FOLDER = ".forgeyard"
PIPELINE_SUFFIXES = (".yml", ".yaml")
_OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_REGULAR_FILE_MODES = ("100644", "100755")


@dataclass(frozen=True)
class RefUpdate:
    """One `old new ref` line of a push."""

    old: str
    new: str
    ref: str

    @property
    def deleted(self) -> bool:
        return not self.new.strip("0")

    @property
    def created(self) -> bool:
        return not self.old.strip("0")


@dataclass(frozen=True)
class Triggered:
    """A pipeline file a ref update runs: its path in the repository, its Spec and the run's event."""

    file: str  # e.g. ".forgeyard/branded-image.yml"
    spec: Spec
    event: dict[str, Any]

    @property
    def pipeline_file(self) -> str:
        return f"{self.file}@{self.event['commit']}"


def parse_updates(lines: Iterable[str]) -> list[RefUpdate]:
    """The ref updates of `old new ref` lines (blank lines skipped); ValueError names the first bad line."""
    updates = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 3 or not all(_OBJECT_ID.fullmatch(sha) for sha in fields[:2]):
            raise ValueError(f"line {number}: expected 'OLD NEW REF' with full object ids")
        if not fields[2].startswith("refs/"):
            raise ValueError(f"line {number}: {fields[2]!r} is not a full ref name (refs/…)")
        updates.append(RefUpdate(*fields))
    return updates


def git_dir(repo: str | Path) -> Path:
    """The git folder of `repo`: a bare repository (or a .git folder) itself, else the work tree's git folder."""
    path = Path(repo).resolve()
    if (path / "HEAD").is_file() and (path / "objects").is_dir():
        return path
    return Path("".join(git.run_local(["-C", str(path), "rev-parse", "--absolute-git-dir"], cwd=path)).strip())


def triggered(repo: str | Path, update: RefUpdate, warn: Callable[[str], None],
              pusher: str | None = None) -> list[Triggered]:
    """The pipelines `update` runs, each with its event; invalid pipeline files are reported to `warn` and left out."""
    if update.deleted:
        return []
    folder = git_dir(repo)
    commit = _peel(folder, update.new)
    if commit is None:
        return []  # a tag of a tree or blob: there is no commit to build
    event = PushEvent(update.ref, commit, update.old,
                      _changed_paths(folder, update, commit) if update.ref.startswith("refs/heads/") else None)
    facts = {"ref": update.ref, "commit": commit, "before": update.old, "repository": str(Path(repo).resolve())}
    if pusher:
        facts["pusher"] = pusher
    found = []
    for file, text in _pipeline_files(folder, commit, warn):
        try:
            spec = load_spec(text, file)
        except DiagnosticError as error:
            for diagnostic in error.errors:
                warn(diagnostic.format())
            continue
        if match_push(spec.data["on"], event):
            found.append(Triggered(file, spec, facts))
    return found


def submit(item: Triggered) -> Run:
    """Record and queue the run of a triggered pipeline in the database."""
    return queue.submit(item.spec, {}, trigger="push", event=item.event, pipeline_file=item.pipeline_file)


def _pipeline_files(folder: Path, commit: str, warn: Callable[[str], None]) -> Iterator[tuple[str, str]]:
    listing = "".join(_git(folder, "ls-tree", "-l", "-z", "--end-of-options", commit, "--", f"{PIPELINE_FOLDER}/"))
    for entry in filter(None, listing.split("\0")):
        meta, _, path = entry.partition("\t")
        mode, kind, blob, size = meta.split()
        if kind != "blob" or mode not in _REGULAR_FILE_MODES or not path.endswith(PIPELINE_SUFFIXES):
            continue
        if int(size) > MAX_BYTES:
            warn(f"{path}:1:1: the file is larger than {MAX_BYTES} bytes")
            continue
        yield path, "\n".join(_git(folder, "cat-file", "blob", blob)) + "\n"


def _changed_paths(folder: Path, update: RefUpdate, commit: str) -> tuple[str, ...]:
    """The files the update changed; for a new branch (or an old commit git no longer has), the commit's own."""
    if not update.created and _peel(folder, update.old) is not None:
        args = ["diff", "--name-only", "-z", "--no-renames", "--end-of-options", update.old, commit, "--"]
    else:
        args = ["diff-tree", "-r", "--root", "--name-only", "-z", "--no-commit-id", "--no-renames",
                "--diff-merges=first-parent", "--end-of-options", commit]
    return tuple(filter(None, "".join(_git(folder, *args)).split("\0")))


def _peel(folder: Path, object_id: str) -> str | None:
    try:
        output = _git(folder, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{object_id}^{{commit}}")
    except git.GitError:
        return None
    return "".join(output).strip() or None


def _git(folder: Path, *args: str) -> list[str]:
    return git.run_local([f"--git-dir={folder}", *args], cwd=folder)
