"""The clone_repo built-in step: check a repository out into the job workspace through the git cache.

It hands credentials only to runner.git's private environment (masked first) and never logs or returns one.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import catalog, checkouts, settings
from runner.git import Git, GitEnvironment, GitError, PolicyError, Runner, check_ref, check_repo_url, parse_repo_url
from runner.steps import BuiltinStep, StepContext, StepFailed
from runner.timestamps import utcnow

MAX_SUBMODULE_LEVELS = 5


@dataclass
class Source:
    url: str
    credentials: dict[str, str]
    repository_id: int | None = None
    default_ref: str | None = None


def _inline_credentials(inputs: dict[str, Any]) -> dict[str, str]:
    if inputs.get("token") and inputs.get("ssh_key"):
        raise StepFailed("give either token or ssh_key, not both")
    given = {"token": inputs.get("token"), "username": inputs.get("username"),
             "ssh_private_key": inputs.get("ssh_key"), "known_hosts": inputs.get("known_hosts")}
    return {name: value for name, value in given.items() if value}


def _is_url(repository: object) -> bool:
    """Whether `repository` is a URL (or an attempt at one) rather than 'official' or a registered name or id."""
    return isinstance(repository, str) and (repository.startswith("-") or ":" in repository or "/" in repository)


def input_problems(inputs: Mapping[str, Any]) -> Iterator[tuple[str, PolicyError]]:
    """(input, error) for each `with:` value as written that the URL or ref policy refuses, for the linter.

    The text only: a host name's addresses are checked when the step runs. A value holding `${{` is known then too.
    """
    repository, ref = inputs.get("repository"), inputs.get("ref")
    if _is_url(repository) and "${{" not in repository:
        try:
            parse_repo_url(repository)
        except PolicyError as error:
            yield "repository", error
    if isinstance(ref, str) and ref and "${{" not in ref:
        try:
            check_ref(ref)
        except PolicyError as error:
            yield "ref", error


def _source(inputs: dict[str, Any]) -> Source:
    """The URL to clone and the credentials for it: official, a registered repository, or a URL."""
    repository, inline = inputs["repository"], _inline_credentials(inputs)
    if repository == "official":
        return Source(settings.official_repo_url(), inline)
    if _is_url(repository):
        return Source(repository, inline)  # registered names hold no ':' or '/'
    try:
        record = catalog.find_repository(repository)
    except catalog.CatalogError as error:
        raise StepFailed(str(error)) from None
    stored = record.credentials()
    if "token" in inline or "ssh_private_key" in inline:  # inline credentials replace the stored ones
        stored = {name: value for name, value in stored.items() if name == "known_hosts"}
    return Source(record.url, {**stored, **inline}, record.id, record.default_ref)


def _target(workspace: Path, path: str) -> Path:
    root = workspace.resolve()
    target = (root / path).resolve()  # resolves symbolic links too: a link out of the workspace is caught
    if Path(path).is_absolute() or root not in target.parents:
        raise StepFailed(f"path {path!r} must name a folder inside the job workspace")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise StepFailed(f"path {path!r} already exists and is not empty")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _runner(context: Any) -> Runner:
    # git's output goes to on_line, which reads results and judges failures before anything is logged.
    return lambda argv, env, cwd, on_line: context.run_process(argv, env=env, cwd=cwd, on_line=on_line)


def _config(git: Git, tree: Path, *scope: str) -> dict[str, str]:
    text = git("config", *scope, "--list", "-z", cwd=tree, quiet=True)  # -z: "key\nvalue\0" per entry
    return dict(entry.split("\n", 1) for entry in text.split("\0") if "\n" in entry)


def _update_submodules(git: Git, tree: Path, depth: int, level: int = 1) -> None:
    """Check submodules out one level at a time, so that every URL (resolved by git) passes the URL policy."""
    if not (tree / ".gitmodules").is_file():
        return
    if level > MAX_SUBMODULE_LEVELS:
        raise GitError(f"submodules nest more than {MAX_SUBMODULE_LEVELS} levels deep", "submodules")
    git("submodule", "init", cwd=tree, quiet=True)
    for key, url in _config(git, tree, "--local").items():
        if key.startswith("submodule.") and key.endswith(".url"):
            try:
                check_repo_url(url)
            except PolicyError as error:
                raise GitError(f"submodule {key[len('submodule.'):-len('.url')]!r}: {error}", error.code) from None
    git("submodule", "update", *(["--depth", str(depth)] if depth else []), cwd=tree)
    for key, path in _config(git, tree, "--file", ".gitmodules").items():
        if key.endswith(".path"):
            _update_submodules(git, tree / path, depth, level + 1)


def _should_stop(context: Any) -> bool:
    return context.cancel.cancelled or (context.deadline is not None and time.monotonic() >= context.deadline)


def run(context: StepContext) -> dict[str, Any]:
    inputs = context.inputs
    source = _source(inputs)
    try:  # again here, whatever was checked before: the step may run long after, and a name's addresses change
        url = check_repo_url(source.url)
    except PolicyError as error:
        raise StepFailed(f"repository: {error}", error.code) from None
    try:
        ref = check_ref(inputs.get("ref") or source.default_ref or "HEAD")
    except PolicyError as error:
        raise StepFailed(f"ref: {error}", error.code) from None
    depth, target = inputs["depth"], _target(context.workspace, inputs["path"])
    history = "full history" if depth == 0 else f"depth {depth}"
    context.log(f"Cloning {url} at {ref} ({history}) into {inputs['path']}")
    started = time.monotonic()
    try:
        with GitEnvironment(url, source.credentials, parent=context.scratch) as environment:
            for secret in environment.secrets:
                context.add_mask(secret)
            git = Git(environment, _runner(context), log=context.log)
            checkout = checkouts.checkout(url, ref, depth, target, git, lambda: _should_stop(context), context.cancel)
            if inputs["submodules"]:
                _update_submodules(git, target, depth)
    except OSError:  # e.g. ENOSPC copying objects: the step fails as no_space, and a retry starts empty too
        shutil.rmtree(target, ignore_errors=True)
        raise
    except (GitError, ValueError) as error:
        shutil.rmtree(target, ignore_errors=True)  # a retry starts from an empty folder
        detail = f"ref {ref!r} not found" if getattr(error, "code", None) == "ref_not_found" else str(error)
        raise StepFailed(f"could not clone {url}: {detail}", getattr(error, "code", None) or "clone_failed") from None
    cache = ("from the cache (a checkout prepared in advance moved in)" if checkout.prepared
             else "from the cache (only new objects fetched)" if checkout.warm else "cold (cache filled)")
    context.log(f"Checked out {checkout.commit} ({ref}) {cache} in {time.monotonic() - started:.2f}s")
    if source.repository_id is not None:
        catalog.Repository.update(last_used_at=utcnow()).where(catalog.Repository.id == source.repository_id).execute()
    context.state["clone_repo"] = {"path": str(target), "url": url, "commit": checkout.commit, "ref": ref,
                                   "commit_time": checkout.commit_time, "repository_id": source.repository_id}
    return {"commit": checkout.commit, "ref": ref, "path": str(target.relative_to(context.workspace.resolve()))}


STEP = BuiltinStep("clone_repo", "Clone Git Repository", "Clone the Git repository (official or custom fork)",
                   order=1, required=True, run=run)
