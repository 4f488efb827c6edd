"""Turns an execution's events into records: one writer thread, log lines inserted in batches, never rewritten.

Job threads only enqueue; the writer drains the queue, so a step printing a million lines costs one
`insert_many` per batch and flat memory, and the database sees a single writer per run.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import replace

from runner import queries
from runner.events import JobReport, LogEntry, RunObserver, StepReport
from runner.models import JobResult, Run, StepResult

BATCH_LINES = 1000
FLUSH_SECONDS = 0.05  # a line reaches the database (and so WebSocket readers) within this, plus write time
QUEUE_LIMIT = 50_000  # back-pressure: a flooding step waits for the database instead of filling memory
_STOP = object()


class Recorder(RunObserver):
    def __init__(self, run_id: int):
        self.run_id = run_id
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_LIMIT)
        self._job_rows: dict[str, int] = {}
        self._step_rows: dict[tuple[str, int], int] = {}
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write_loop, name=f"recorder {run_id}", daemon=True)
        self._thread.start()

    # -- observer side (job threads) -------------------------------------------------------------------

    def log(self, entry: LogEntry) -> None:
        self._queue.put(entry)

    def job_changed(self, job: JobReport) -> None:
        self._queue.put(replace(job, steps=[], outputs=dict(job.outputs)))

    def step_changed(self, step: StepReport) -> None:
        self._queue.put(replace(step, outputs=dict(step.outputs)))

    def close(self) -> None:
        """Write everything still queued and stop; re-raises a database error the writer met."""
        self._queue.put(_STOP)
        self._thread.join()
        if self._error:
            raise self._error

    # -- writer side -----------------------------------------------------------------------------------

    def _write_loop(self) -> None:
        lines: list[dict] = []
        deadline = None
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if isinstance(item, LogEntry):
                lines.append({"run": self.run_id, "seq": item.seq, "timestamp": item.timestamp,
                              "job_id": item.job_id, "step_index": item.step_index, "text": item.text})
                deadline = deadline or time.monotonic() + FLUSH_SECONDS
                if len(lines) < BATCH_LINES:
                    continue
            # Anything but a log line (a status change, the stop mark, the flush timer) writes pending lines
            # first, so records never show a step finished before its output.
            if lines:
                self._guarded(queries.insert_log_lines, lines)
            lines, deadline = [], None
            if item is _STOP:
                return
            if isinstance(item, JobReport):
                self._guarded(self._write_job, item)
            elif isinstance(item, StepReport):
                self._guarded(self._write_step, item)

    def _guarded(self, write, item) -> None:
        if self._error is not None:
            return
        try:
            write(item)
        except Exception as error:  # kept and re-raised by close(): a lost record must not pass silently
            self._error = error

    def _write_job(self, job: JobReport) -> None:
        fields = {"name": job.name, "status": job.status, "started_at": job.started_at,
                  "completed_at": job.completed_at, "outputs_json": json.dumps(job.outputs)}
        row_id = self._job_rows.get(job.job_id)
        if row_id is None:
            row = JobResult.create(run=self.run_id, job_id=job.job_id, job_key=job.key,
                                   matrix_json=json.dumps(job.matrix), **fields)
            self._job_rows[job.job_id] = row.id
        else:
            JobResult.update(**fields).where(JobResult.id == row_id).execute()

    def _write_step(self, step: StepReport) -> None:
        fields = {"status": step.status, "outcome": step.outcome, "exit_code": step.exit_code,
                  "attempts": step.attempts, "started_at": step.started_at, "completed_at": step.completed_at,
                  "outputs_json": json.dumps(step.outputs), "error": step.error}
        key = (step.job_id, step.index)
        row_id = self._step_rows.get(key)
        if row_id is None:
            row = StepResult.create(run=self.run_id, job_id=step.job_id, step_index=step.index,
                                    step_id=step.step_id, name=step.name, kind=step.kind, uses=step.uses, **fields)
            self._step_rows[key] = row.id
        else:
            StepResult.update(**fields).where(StepResult.id == row_id).execute()


def mark_run(run_id: int, **fields) -> None:
    Run.update(**fields).where(Run.id == run_id).execute()
