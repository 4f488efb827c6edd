"""Registry of built-in steps (`uses:` keys) and the interface each step module in this package implements.

A step module defines `STEP = BuiltinStep(...)`; its `with:` schema lives in `schemas/steps/<key>.schema.json`.
Steps never spawn processes themselves: they call `context.run_process`, which goes through runner.process.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
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


_registry: dict[str, BuiltinStep] = {}
_discovered = False


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    for module in pkgutil.iter_modules(__path__):
        step = getattr(importlib.import_module(f"{__name__}.{module.name}"), "STEP", None)
        if isinstance(step, BuiltinStep):
            register(step)


def register(step: BuiltinStep) -> None:
    _registry[step.key] = step


def unregister(key: str) -> None:
    _registry.pop(key, None)


def get_step(key: str) -> BuiltinStep | None:
    _discover()
    return _registry.get(key)


def all_steps() -> list[BuiltinStep]:
    _discover()
    return sorted(_registry.values(), key=lambda s: (s.order, s.key))
