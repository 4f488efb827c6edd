"""The live terminal view of a run for `forgeyard run`: step headers, output lines and the closing summary."""

from __future__ import annotations

import sys
from typing import TextIO

from runner.events import JobReport, LogBatch, LogEntry, RunObserver, StepReport

_STATUS_MARK = {"success": "✓", "failure": "✗", "timed_out": "✗", "cancelled": "✗", "skipped": "-"}


class ConsoleObserver(RunObserver):
    """Prints a run as it happens; with several jobs at once each line carries its job id."""

    def __init__(self, stream: TextIO = sys.stdout, *, multi_job: bool = False):
        self.stream = stream
        self.multi_job = multi_job
        self.jobs: dict[str, JobReport] = {}
        self.steps: dict[tuple[str, int], StepReport] = {}
        self._color = stream.isatty()

    def log(self, entry: LogEntry) -> None:
        prefix = f"[{entry.job_id}] " if self.multi_job and entry.job_id else ""
        if entry.system:
            self._write(f"{prefix}{self._style(entry.text, '1')}")
        else:
            self._write(f"{prefix}  {entry.text}")

    def log_batch(self, batch: LogBatch) -> None:
        prefix = f"[{batch.job_id}]   " if self.multi_job and batch.job_id else "  "
        self.stream.write("".join([f"{prefix}{text}\n" for text in batch.texts]))
        self.stream.flush()  # once per chunk of output, not per line

    def job_changed(self, job: JobReport) -> None:
        self.jobs[job.job_id] = job

    def step_changed(self, step: StepReport) -> None:
        self.steps[(step.job_id, step.index)] = step

    def summary(self, run_id: int, status: str, seconds: float) -> None:
        rows = [("JOB", "STEP", "RESULT", "DURATION")]
        for job_id, job in self.jobs.items():
            steps = [s for (j, _), s in sorted(self.steps.items(), key=lambda kv: kv[0]) if j == job_id]
            if not steps:
                rows.append((job_id, "", job.status, ""))
            for step in steps:
                duration = f"{step.duration:.2f}s" if step.duration is not None else ""
                rows.append((job_id, step.name, f"{_STATUS_MARK.get(step.status, ' ')} {step.status}", duration))
        widths = [min(40, max(len(row[i]) for row in rows)) for i in range(4)]
        self._write("")
        for row in rows:
            self._write("  ".join(cell[:40].ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        self._write(f"Run {run_id} {status} in {seconds:.2f}s")

    def _style(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self._color else text

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
