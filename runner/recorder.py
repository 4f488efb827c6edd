"""Turns an execution's events into records: one writer thread, log lines inserted in batches, never rewritten.

Job threads only enqueue; the writer takes whatever is queued whenever it is free and writes it in one transaction
(the lines, then the latest report of each job and step), so an idle run's line is stored within milliseconds, a
step printing a million lines costs a transaction per ten thousand lines with flat memory, and the database sees a
single writer per run. After each write, readers in this process watching the run (WebSockets) are told.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import replace

from runner import queries
from runner.database import db, peewee
from runner.events import JobReport, LogBatch, LogEntry, RunObserver, StepReport
from runner.models import JobResult, Run, StepResult

QUEUE_LIMIT = 10_000  # lines; back-pressure: a flooding step waits for the database instead of filling memory
GATHER_SECONDS = 0.005  # how long a writer woken after a pause waits for more items; a live log stays prompt
_STOP = object()
log = logging.getLogger("forgeyard.recorder")


class Recorder(RunObserver):
    def __init__(self, run_id: int):
        self.run_id = run_id
        self._lock = threading.Lock()
        self._queued = threading.Condition(self._lock)  # the writer waits for items
        self._taken = threading.Condition(self._lock)  # producers wait for room
        self._items: deque = deque()
        self._lines = 0  # lines in _items
        self._idle = False  # the writer waits for items: the next one must wake it
        self._job_rows: dict[str, int] = {}
        self._step_rows: dict[tuple[str, int], int] = {}
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write_loop, name=f"recorder {run_id}", daemon=True)
        self._thread.start()

    # -- observer side (job threads) -------------------------------------------------------------------

    def log(self, entry: LogEntry) -> None:
        self._put(entry, 1)

    def log_batch(self, batch: LogBatch) -> None:
        self._put(batch, len(batch.texts))

    def job_changed(self, job: JobReport) -> None:
        self._put(replace(job, steps=[], outputs=dict(job.outputs)))

    def step_changed(self, step: StepReport) -> None:
        self._put(replace(step, outputs=dict(step.outputs)))

    def close(self) -> None:
        """Write everything still queued and stop; re-raises a database error the writer met."""
        self._put(_STOP)
        self._thread.join()
        if self._error:
            raise self._error

    def _put(self, item, lines: int = 0) -> None:
        with self._lock:
            while lines and self._lines >= QUEUE_LIMIT:
                self._queued.notify()  # a writer gathering items would otherwise keep this flood waiting
                self._taken.wait()
            self._items.append(item)
            self._lines += lines
            if self._idle or item is _STOP:
                self._idle = False
                self._queued.notify()

    # -- writer side -----------------------------------------------------------------------------------

    def _take(self) -> deque:
        with self._lock:
            if not self._items:
                self._idle = True
                while not self._items:
                    self._queued.wait()
                # Woken by the first item after a pause: the ones right behind it (a step's start, its output, its
                # end) join it in one transaction. A flood never waits here: its items are there already.
                if self._items[-1] is not _STOP:
                    self._queued.wait(GATHER_SECONDS)
            items, self._items, self._lines = self._items, deque(), 0
            self._taken.notify_all()
            return items

    def _write_loop(self) -> None:
        while True:
            items = self._take()
            self._write(items)
            if items[-1] is _STOP:
                return

    def _write(self, items: deque) -> None:
        """One transaction for everything taken: the lines, then each job's and step's latest report (a step that
        started and ended since the last write is written once, ended; one still running is written running)."""
        batches: list[LogBatch] = []
        jobs: dict[str, JobReport] = {}
        steps: dict[tuple[str, int], StepReport] = {}
        for item in items:
            if isinstance(item, LogBatch):
                batches.append(item)
            elif isinstance(item, LogEntry):
                batches.append(LogBatch(item.seq, item.timestamp, item.job_id, item.step_index, [item.text]))
            elif isinstance(item, JobReport):
                jobs[item.job_id] = item
            elif isinstance(item, StepReport):
                steps[(item.job_id, item.index)] = item
        if self._error is not None or not (batches or jobs or steps):
            return
        try:
            with db.atomic():
                queries.insert_log_batches(self.run_id, batches)
                for job in jobs.values():
                    self._write_job(job)
                for step in steps.values():
                    self._write_step(step)
        except Exception as error:  # kept and re-raised by close(): a lost record must not pass silently
            self._error = _database_error(error)
            return
        _notify(self.run_id)

    def _write_job(self, job: JobReport) -> None:
        fields = {"name": job.name, "status": job.status, "started_at": job.started_at,
                  "completed_at": job.completed_at, "outputs_json": json.dumps(job.outputs)}
        row_id = self._job_rows.get(job.job_id)
        if row_id is None:
            self._job_rows[job.job_id] = queries.insert_record(JobResult, {
                "run": self.run_id, "job_id": job.job_id, "job_key": job.key, "matrix_json": json.dumps(job.matrix),
                **fields})
        else:
            queries.update_record(JobResult, row_id, fields)

    def _write_step(self, step: StepReport) -> None:
        fields = {"status": step.status, "outcome": step.outcome, "exit_code": step.exit_code,
                  "attempts": step.attempts, "started_at": step.started_at, "completed_at": step.completed_at,
                  "outputs_json": json.dumps(step.outputs), "error": step.error}
        key = (step.job_id, step.index)
        row_id = self._step_rows.get(key)
        if row_id is None:
            self._step_rows[key] = queries.insert_record(StepResult, {
                "run": self.run_id, "job_id": step.job_id, "step_index": step.index, "step_id": step.step_id,
                "name": step.name, "kind": step.kind, "uses": step.uses, **fields})
        else:
            queries.update_record(StepResult, row_id, fields)


def _database_error(error: BaseException) -> BaseException:
    """The database error behind `error`, else `error`. On a connection the server has closed (a worker stalled
    past its lease), peewee's rollback fails too, and its InterfaceError hides the error that called for it."""
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, peewee.DatabaseError):
        cause = cause.__context__
    return cause or error


def mark_run(run_id: int, **fields) -> None:
    queries.update_record(Run, run_id, fields)
    _notify(run_id)


# -- readers in this process -------------------------------------------------------------------------------

_watchers: defaultdict[int, set[Callable[[], None]]] = defaultdict(set)
_watchers_lock = threading.Lock()


def watch(run_id: int, callback: Callable[[], None]) -> Callable[[], None]:
    """Call `callback` (from the writer's thread; it must not block) whenever this process wrote records of the
    run; returns the function that stops it. Runs executed by other processes are not seen: poll for those."""
    with _watchers_lock:
        _watchers[run_id].add(callback)

    def unwatch() -> None:
        with _watchers_lock:
            _watchers[run_id].discard(callback)
            if not _watchers[run_id]:
                del _watchers[run_id]

    return unwatch


def _notify(run_id: int) -> None:
    with _watchers_lock:
        callbacks = list(_watchers.get(run_id, ()))
    for callback in callbacks:
        try:
            callback()
        except Exception:  # a reader's failure is its own: the run goes on being recorded
            log.exception("a watcher of run %s failed", run_id)
