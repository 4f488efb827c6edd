"""The context a built-in step runs in: its inputs, folder, log and the process seam bound to its deadline."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import process, settings
from runner.events import EventHub

# What git and other tools print when a write hits a full disk (git says the latter after a short write).
NO_SPACE_PHRASES = (os.strerror(errno.ENOSPC).lower(), "out of diskspace")


@dataclass
class BuiltinStepContext:
    inputs: dict[str, Any]
    workspace: Path
    scratch: Path
    env: dict[str, str]
    secrets: Mapping[str, str]
    run_id: int | None
    job_id: str
    step_id: str | None
    step_index: int
    pipeline_dir: Path | None
    state: dict[str, Any]
    hub: EventHub
    cancel: process.CancelToken
    deadline: float | None  # time.monotonic() value after which processes are killed
    output_recorder: Callable[..., int | None] | None = None
    timed_out: bool = field(default=False, init=False)
    no_space: bool = field(default=False, init=False)  # one of its processes said the disk was full

    def log(self, line: str) -> None:
        for part in str(line).splitlines() or [""]:
            self.hub.log(self.job_id, self.step_index, part)

    def add_mask(self, value: str) -> None:
        self.hub.masker.add(value)

    def run_process(self, argv: list[str], *, env: Mapping[str, str] | None = None,
                    cwd: Path | None = None, stdin_data: bytes | None = None,
                    on_line: Callable[[str], None] | None = None) -> process.ProcessResult:
        timeout = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

        def watch(lines: list[str]) -> None:
            if not self.no_space and any(phrase in line.lower() for line in lines for phrase in NO_SPACE_PHRASES):
                self.no_space = True
            if on_line is None:
                self.hub.log_many(self.job_id, self.step_index, lines)
            else:
                for line in lines:
                    on_line(line)

        result = process.run_streaming(
            argv, env=dict(env if env is not None else self.env), cwd=cwd or self.workspace,
            on_lines=watch, timeout=timeout, cancel=self.cancel, stdin_data=stdin_data,
            kill_grace=settings.kill_grace_seconds())
        self.timed_out = self.timed_out or result.timed_out
        return result

    def record_output(self, output_type: str, **fields: Any) -> int | None:
        return self.output_recorder(output_type=output_type, **fields) if self.output_recorder else None
