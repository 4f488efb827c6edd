"""Installs and removes Forgeyard's git hooks, keeping (chaining) and restoring any hook already there; queues nothing.

The hook calls the Python and the Forgeyard that installed it. It never rejects or holds a push: the hook that was
there runs first with the same input, then `forgeyard trigger push`, whose problems end as one-line warnings.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import runner
from runner.git import GitError, run_local

MARKER = "# forgeyard-hook"
CHAINED_SUFFIX = ".forgeyard-chained"
ENV_FILE = "forgeyard.env"  # FORGEYARD_* settings of the installer, for pushes whose environment lacks them
BAKED_VARIABLES = ("FORGEYARD_HOME", "FORGEYARD_DATABASE_URL", "FORGEYARD_URL", "FORGEYARD_TOKEN")
TRIGGER_TIMEOUT_SECONDS = 30
SERVER_HOOKS, LOCAL_HOOKS = ("post-receive",), ("post-commit", "post-merge")

_READ_PUSH = """updates=$(cat)
chain() { printf '%s\\n' "$updates" | "$@"; }"""
# A commit or merge in a work tree: the branch HEAD names, its new commit and its previous value from the reflog
# (none: a new branch, reported as git does, with zeros).
_READ_LOCAL = """updates=
if ref=$(git symbolic-ref -q HEAD) && new=$(git rev-parse -q --verify HEAD); then
  old=$(git rev-parse -q --verify "$ref@{1}") || old=$(printf '%s' "$new" | tr 0-9a-f 0)
  updates="$old $new $ref"
fi
chain() { "$@" </dev/null; }"""
_SCRIPT = """#!/bin/sh
@MARKER@: written by `forgeyard hook install`; `forgeyard hook uninstall` removes it and puts back the hook
# that was here before (kept as @NAME@@CHAINED@, run first). Forgeyard never rejects or holds a push:
# whatever goes wrong becomes a one-line warning.
hooks=$(cd -- "$(dirname -- "$0")" && pwd)
status=0
@READ@
if [ -x "$hooks/@NAME@@CHAINED@" ]; then
  chain "$hooks/@NAME@@CHAINED@" "$@" || status=$?
fi
if [ -n "$updates" ]; then
  if [ -r "$hooks/@ENV_FILE@" ]; then . "$hooks/@ENV_FILE@"; fi
  limit=
  if command -v timeout >/dev/null 2>&1; then limit="timeout -k 5 @TIMEOUT@"; fi
  output=$(printf '%s\\n' "$updates" | PYTHONPATH=@ROOT@ $limit @PYTHON@ -P -m runner trigger push --repo "$PWD" 2>&1)
  code=$?
  if [ "$code" -le 1 ]; then
    if [ -n "$output" ]; then printf '%s\\n' "$output"; fi
  else
    printf 'forgeyard: warning: no run queued (trigger exit code %s): %s\\n' "$code" \\
      "$(printf '%s\\n' "$output" | tail -n 1)"
  fi
fi
exit "$status"
"""


class HookError(Exception):
    """The hook cannot be installed or removed here; nothing was changed."""


def install(repo_dir: str | Path, local: bool = False) -> list[str]:
    """Install the hooks (bare repository: post-receive; `local` work tree: post-commit, post-merge)."""
    folder = hooks_dir(repo_dir, local)
    folder.mkdir(exist_ok=True)
    names = LOCAL_HOOKS if local else SERVER_HOOKS
    for name in names:
        hook = folder / name
        if hook.exists() and not _ours(hook) and (folder / f"{name}{CHAINED_SUFFIX}").exists():
            raise HookError(f"{folder / name}{CHAINED_SUFFIX} exists already; move it away and install again")
    messages = []
    for name in names:
        hook, chained = folder / name, folder / f"{name}{CHAINED_SUFFIX}"
        if hook.exists() and not _ours(hook):
            os.rename(hook, chained)
        _write(hook, _script(name, local), 0o755)
        messages.append(f"installed {name} hook in {folder}"
                        + (" (the hook already there runs first)" if chained.exists() else ""))
    baked = [f"{name}=${{{name}:-{shlex.quote(os.environ[name])}}}\nexport {name}\n"
             for name in BAKED_VARIABLES if os.environ.get(name)]
    if baked:
        _write(folder / ENV_FILE, "".join(baked), 0o600)  # may hold a token or a database password
    else:
        (folder / ENV_FILE).unlink(missing_ok=True)
    return messages


def uninstall(repo_dir: str | Path, local: bool = False) -> list[str]:
    """Remove our hooks only, putting back the hooks they chained."""
    folder = hooks_dir(repo_dir, local)
    messages = []
    for name in LOCAL_HOOKS if local else SERVER_HOOKS:
        hook, chained = folder / name, folder / f"{name}{CHAINED_SUFFIX}"
        if hook.exists() and not _ours(hook):
            messages.append(f"{hook} is not Forgeyard's; left as it is")
            continue
        restored = chained.exists()
        if not restored and not hook.exists():
            messages.append(f"no Forgeyard {name} hook in {folder}")
            continue
        hook.unlink(missing_ok=True)
        if restored:
            os.rename(chained, hook)
        messages.append(f"removed {name} hook from {folder}" + (" (the previous hook is back)" if restored else ""))
    if not any(_ours(folder / name) for name in (*SERVER_HOOKS, *LOCAL_HOOKS)):
        (folder / ENV_FILE).unlink(missing_ok=True)
    return messages


def hooks_dir(repo_dir: str | Path, local: bool) -> Path:
    """The hooks folder of a bare repository, or (`local`) of a work tree's repository."""
    path = Path(repo_dir).resolve()
    if local:
        args = ["-C", str(path), "rev-parse", "--path-format=absolute", "--git-common-dir"]
        problem = "is not a git work tree"
    else:
        args = [f"--git-dir={path}", "rev-parse", "--is-bare-repository"]
        problem = "is not a bare repository (for a work tree use --local)"
    try:
        answer = "".join(run_local(args, cwd=path)).strip() if path.is_dir() else ""
    except GitError:
        answer = ""
    if local and answer:
        return Path(answer) / "hooks"
    if answer == "true":
        return path / "hooks"
    raise HookError(f"{repo_dir} {problem}")


def _ours(hook: Path) -> bool:
    try:
        with hook.open("rb") as file:
            return MARKER.encode() in file.read(4096)
    except (FileNotFoundError, IsADirectoryError):
        return False


def _script(name: str, local: bool) -> str:
    root = Path(runner.__file__).resolve().parent.parent  # where this Forgeyard is imported from
    values = {"@MARKER@": MARKER, "@NAME@": name, "@CHAINED@": CHAINED_SUFFIX, "@ENV_FILE@": ENV_FILE,
              "@READ@": _READ_LOCAL if local else _READ_PUSH, "@TIMEOUT@": str(TRIGGER_TIMEOUT_SECONDS),
              "@ROOT@": shlex.quote(str(root)), "@PYTHON@": shlex.quote(sys.executable)}
    script = _SCRIPT
    for placeholder, value in values.items():
        script = script.replace(placeholder, value)
    return script


def _write(path: Path, text: str, mode: int) -> None:
    """Write `path` whole or not at all (a half-written hook would break every push)."""
    temporary = path.with_name(f".{path.name}.forgeyard-tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    os.chmod(temporary, mode)
    os.replace(temporary, path)
