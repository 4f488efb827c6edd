"""Conventions §3 as a test: the process seam (runner/process.py, with its process-group watchdog in
runner/processgroup.py) is all that spawns processes, only runner/git.py and runner/docker.py put `git` or `docker`
at the head of a command line, and only runner/git.py sets git's environment variables (GIT_*). An AST scan of
runner/ and api/.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

pytestmark = pytest.mark.security

ROOT = Path(__file__).resolve().parents[2]
SEAM = ("runner/process.py", "runner/processgroup.py")
SPAWNING_MODULES = {"subprocess", "pty", "multiprocessing", "pexpect"}
SPAWNING_CALLS = ("os.exec", "os.spawn", "os.posix_spawn", "os.system", "os.popen", "os.fork",
                  "asyncio.create_subprocess_")
PROGRAMS = {"git": "runner/git.py", "docker": "runner/docker.py"}


@cache
def _sources() -> tuple[tuple[str, ast.Module], ...]:
    return tuple((str(path.relative_to(ROOT)), ast.parse(path.read_text(), str(path)))
                 for package in ("runner", "api") for path in sorted((ROOT / package).rglob("*.py")))


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def spawns(tree: ast.Module) -> list[str]:
    """Imports of a process-spawning module and calls of os/asyncio functions that start a process."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in SPAWNING_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in SPAWNING_MODULES:
                found.append(f"from {node.module} import …")
            elif node.module in ("os", "asyncio"):
                found += [f"from {node.module} import {a.name}" for a in node.names
                          if f"{node.module}.{a.name}".startswith(SPAWNING_CALLS)]
        elif isinstance(node, ast.Call) and _dotted(node.func).startswith(SPAWNING_CALLS):
            found.append(f"{_dotted(node.func)}() at line {node.lineno}")
    return found


def program_heads(tree: ast.Module) -> list[str]:
    """`git`/`docker` as the first item of a list or tuple: literally, or through a module constant holding it."""
    constants = {target.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
                 and isinstance(node.value, ast.Constant) and node.value.value in PROGRAMS
                 for target in node.targets if isinstance(target, ast.Name)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
            head = node.elts[0]
            program = head.value if isinstance(head, ast.Constant) else constants.get(getattr(head, "id", None))
            if program in PROGRAMS:
                found.append(f"{program} at line {node.lineno}")
    return found


def test_only_the_process_seam_spawns_processes():
    offenders = {name: found for name, tree in _sources() if name not in SEAM and (found := spawns(tree))}
    assert offenders == {}
    assert spawns(ast.parse(Path(ROOT / SEAM[0]).read_text())), "the scan no longer sees the seam"


def test_only_the_git_and_docker_modules_build_their_command_lines():
    offenders = {name: heads for name, tree in _sources()
                 if (heads := [h for h in program_heads(tree) if PROGRAMS[h.split()[0]] != name])}
    assert offenders == {}
    seen = {name for name, tree in _sources() if program_heads(tree)}
    assert seen == set(PROGRAMS.values()), "the scan no longer sees the modules it allows"


def git_variables(tree: ast.Module) -> list[str]:
    """String constants naming git's environment variables (GIT_CONFIG_GLOBAL, GIT_SSH_COMMAND, …)."""
    return sorted({node.value for node in ast.walk(tree)
                   if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("GIT_")})


def test_only_runner_git_sets_the_environment_of_git():
    offenders = {name: found for name, tree in _sources() if name != "runner/git.py" and (found := git_variables(tree))}
    assert offenders == {}


@pytest.mark.parametrize(("source", "expected"), [
    ("import subprocess", ["import subprocess"]),
    ("from subprocess import run", ["from subprocess import …"]),
    ("import os\nos.execvp('x', ['x'])", ["os.execvp() at line 2"]),
    ("from os import system", ["from os import system"]),
    ("import asyncio\nasyncio.create_subprocess_exec('x')", ["asyncio.create_subprocess_exec() at line 2"]),
    ("import os\nos.path.join('a')", []),
])
def test_the_spawn_scan_sees_what_it_looks_for(source, expected):
    assert spawns(ast.parse(source)) == expected


@pytest.mark.parametrize(("source", "expected"), [
    ("argv = ['git', 'status']", ["git at line 1"]),
    ("GIT = 'git'\nrun((GIT, *args))", ["git at line 2"]),
    ("DOCKER = 'docker'\nrun([DOCKER, 'build'])", ["docker at line 2"]),
    ("path = base / 'git'\nparts = ['x', 'git']", []),
])
def test_the_command_line_scan_sees_what_it_looks_for(source, expected):
    assert program_heads(ast.parse(source)) == expected
