"""Registry of built-in steps (`uses:` keys) and the interface each step module in this package implements.

A step module defines `STEP = BuiltinStep(...)` and is listed in BUILTIN_STEPS; its `with:` schema lives in
`schemas/steps/<key>.schema.json`. Steps never spawn processes themselves: they call `context.run_process`,
which goes through runner.process.
"""

from __future__ import annotations

import importlib
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from schemas import schema_path


class StepFailed(Exception):
    """A built-in step's clear, user-facing failure; the message is logged (masked) and the step fails.

    `code` (e.g. artifact_too_large, credential_host_mismatch) becomes the step's and the run's `error`.
    """

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.code = code


class StepContext(Protocol):
    """What the engine hands a built-in step's `run` (implemented by runner.stepcontext)."""

    inputs: dict[str, Any]  # `with:` after expressions, schema defaults applied
    workspace: Path  # the job's folder; every file the step writes stays under it
    scratch: Path  # private 0700 folder of the job outside the workspace (key files, DOCKER_CONFIG); removed
    env: dict[str, str]  # the environment a step's processes get by default
    secrets: Mapping[str, str]
    run_id: int | None
    job_id: str
    step_id: str | None
    pipeline_dir: Path | None  # folder of the pipeline file, for paths relative to it; None for API specs
    # Shared by the built-in steps of one job, in order: what clone_repo checked out, what branding
    # and configuration changed, which image was built. Keys are the step keys that wrote them.
    state: dict[str, Any]
    cancel: Any  # runner.process.CancelToken of the step: a step that waits checks it
    deadline: float | None  # time.monotonic() after which the step's processes are killed
    timed_out: bool  # set by run_process; a step that stops at its deadline without a process sets it

    def log(self, line: str) -> None: ...

    def add_mask(self, value: str) -> None: ...

    def run_process(self, argv: list[str], *, env: Mapping[str, str] | None = None,
                    cwd: Path | None = None, stdin_data: bytes | None = None,
                    on_line: Callable[[str], None] | None = None) -> Any:
        """Run through runner.process, bounded by the step's deadline and cancel; lines go to `on_line` or the log."""
        ...

    def record_output(self, output_type: str, **fields: Any) -> int | None:
        """Record a build output (zip, docker_image, registry_image) of the run; returns its id."""
        ...


@dataclass(frozen=True)
class BuiltinStep:
    key: str
    name: str
    description: str
    order: int
    required: bool
    run: Callable[[StepContext], Mapping[str, Any]]
    requires: tuple[str, ...] = field(default_factory=tuple)  # keys that must run earlier in the same job
    schema: dict | None = None  # the `with:` schema; None reads schemas/steps/<key>.schema.json

    @property
    def input_schema(self) -> dict:
        return self.schema if self.schema is not None else _load_input_schema(self.key)


@cache
def _load_input_schema(key: str) -> dict:
    path = schema_path(f"steps/{key}.schema.json")
    return json.loads(path.read_text()) if path.exists() else {"type": "object"}


@dataclass(frozen=True)
class StepDeclaration:
    """What the linter needs of a built-in step, known without importing its module."""

    key: str
    requires: tuple[str, ...] = ()

    @property
    def input_schema(self) -> dict:
        return _load_input_schema(self.key)


# Every step module of this package, by key (the module is named after it). The modules load PIL, docker,
# peewee…: linting reads this table and the schema files, and a module is imported when its step runs.
# tests/test_spec.py checks the table against each module's STEP.
BUILTIN_STEPS = {
    "clone_repo": StepDeclaration("clone_repo"),
    "apply_branding": StepDeclaration("apply_branding", ("clone_repo",)),
    "apply_config": StepDeclaration("apply_config", ("clone_repo",)),
    "create_zip": StepDeclaration("create_zip", ("clone_repo",)),
    "build_image": StepDeclaration("build_image", ("clone_repo",)),
    "push_registry": StepDeclaration("push_registry", ("clone_repo", "build_image")),
}

_registry: dict[str, BuiltinStep] = {}
_discovered = False
_discovery = threading.RLock()  # re-entrant: a step module's import may ask for another step
_customised = False  # register() or unregister() was called: BUILTIN_STEPS alone no longer says what exists


def _discover() -> None:
    """Import every step module once; a thread asking meanwhile (concurrent API requests) waits for all of them."""
    global _discovered
    if _discovered:
        return
    with _discovery:
        if _discovered:
            return
        import pkgutil  # only here: a start-up that knows its steps from BUILTIN_STEPS skips it

        for module in pkgutil.iter_modules(__path__):
            _import(module.name)
        _discovered = True


def _import(name: str) -> None:
    step = getattr(importlib.import_module(f"{__name__}.{name}"), "STEP", None)
    if isinstance(step, BuiltinStep):
        _registry.setdefault(step.key, step)  # a step registered by hand (a test's stand-in) stays


def register(step: BuiltinStep) -> None:
    global _customised
    _customised = True
    _registry[step.key] = step


def unregister(key: str) -> None:
    global _customised
    _customised = True
    _registry.pop(key, None)


def customised() -> bool:
    """Whether steps were registered or removed by hand (tests, plug-ins) since start-up."""
    return _customised


def declared_step(key: str) -> BuiltinStep | StepDeclaration | None:
    """The step `key` as the linter needs it: without importing its module when it is listed in BUILTIN_STEPS."""
    if key in _registry or _discovered:
        return _registry.get(key)
    return BUILTIN_STEPS.get(key) or get_step(key)


def get_step(key: str) -> BuiltinStep | None:
    """The step `key`; a listed built-in step imports its own module only."""
    if key not in _registry and not _discovered:
        if key in BUILTIN_STEPS:
            _import(key)
        if key not in _registry:
            _discover()
    return _registry.get(key)


def all_steps() -> list[BuiltinStep]:
    _discover()
    return sorted(_registry.values(), key=lambda s: (s.order, s.key))
