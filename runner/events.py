"""What an execution reports while it runs, and the hub that masks secrets before any observer sees a line.

The hub is the one place secrets are masked: every log line passes through it before it is stored,
streamed or printed. Observers (the recorder, the console) must not receive text any other way. It is also
where a run's log is capped (FORGEYARD_MAX_LOG_BYTES): past the cap, steps go on but their output is dropped.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, NamedTuple

from runner.masking import SecretMasker
from runner.timestamps import utcnow


# The two line events are NamedTuples, not frozen dataclasses: as immutable, and ten times cheaper to define
# (a dataclass compiles its methods when the module loads, which every `forgeyard run` pays).
class LogEntry(NamedTuple):
    seq: int
    timestamp: datetime  # naive UTC, as every record
    job_id: str | None
    step_index: int | None
    text: str
    system: bool = False  # a line Forgeyard wrote about the run, not a step's own output


class LogBatch(NamedTuple):
    """Lines a step printed together (one read of its output): seqs first_seq, first_seq + 1 …, one timestamp."""

    first_seq: int
    timestamp: datetime
    job_id: str | None
    step_index: int | None
    texts: list[str]

    def entries(self) -> Iterator[LogEntry]:
        for seq, text in enumerate(self.texts, self.first_seq):
            yield LogEntry(seq, self.timestamp, self.job_id, self.step_index, text)


@dataclass
class StepReport:
    job_id: str
    index: int
    step_id: str | None
    name: str
    kind: str  # "run" | "uses"
    uses: str | None = None
    status: str = "pending"  # pending|running|success|failure|cancelled|skipped|timed_out
    outcome: str | None = None  # before continue-on-error, as GitHub's steps.<id>.outcome
    exit_code: int | None = None
    attempts: int = 0
    started_at: datetime | None = None
    completed_at: datetime | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def duration(self) -> float | None:
        if self.started_at and self.completed_at:
            return (self.completed_at - self.started_at).total_seconds()
        return None


@dataclass
class JobReport:
    job_id: str
    key: str
    name: str
    matrix: dict[str, Any]
    status: str = "pending"  # pending|running|success|failure|cancelled|skipped|timed_out
    started_at: datetime | None = None
    completed_at: datetime | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    steps: list[StepReport] = field(default_factory=list)


class RunObserver:
    """Receives an execution's events; every method may be called from any job thread, one at a time."""

    def job_changed(self, job: JobReport) -> None: ...

    def step_changed(self, step: StepReport) -> None: ...

    def log(self, entry: LogEntry) -> None: ...

    def log_batch(self, batch: LogBatch) -> None:
        for entry in batch.entries():
            self.log(entry)

    def run_finished(self, status: str, error: str | None) -> None: ...


DEFAULT_MAX_LOG_BYTES = 50 * 1024 * 1024
TRUNCATED_LINE = ("Log truncated: this run's log reached its limit of {limit} bytes (FORGEYARD_MAX_LOG_BYTES). "
                  "The steps go on running; their further output is not kept.")


def max_log_bytes() -> int:
    """The log cap of one execution of a run, from FORGEYARD_MAX_LOG_BYTES."""
    return int(os.environ.get("FORGEYARD_MAX_LOG_BYTES") or DEFAULT_MAX_LOG_BYTES)


class EventHub:
    """Serialises events from job threads, numbers log lines, masks secrets, caps the log, fans out to observers.

    As GitLab does with a job log over its limit, a step's output past the cap is dropped behind one marker line
    and the step is not stopped: a chatty but correct build still succeeds. Forgeyard's own lines (step and job
    status, the summary) are few and still kept, so the end of a truncated log says how the run ended.
    """

    def __init__(self, observers: list[RunObserver], masker: SecretMasker, first_seq: int = 1,
                 max_bytes: int | None = None):
        self._observers = observers
        self._batch_sinks = [_batch_sink(observer) for observer in observers]
        self.masker = masker
        self._lock = threading.Lock()
        self._seq = first_seq - 1
        self._max_bytes = max_log_bytes() if max_bytes is None else max_bytes
        self._logged = 0  # bytes of the lines passed on, newlines included
        self._truncated = False

    def log(self, job_id: str | None, step_index: int | None, text: str, *, system: bool = False) -> None:
        with self._lock:
            if self._truncated and not system:
                return  # not even masked: a flood past the cap costs a lock and a comparison per line
            text = self.masker.mask(text)
            self._logged += len(text.encode("utf-8", "replace")) + 1
            if self._logged > self._max_bytes and not system:
                self._truncate(job_id, step_index)
            else:
                self._emit(LogEntry(self._seq + 1, utcnow(), job_id, step_index, text, system))

    def log_many(self, job_id: str | None, step_index: int | None, lines: Sequence[str]) -> None:
        """A step's lines that arrived together, as log() would pass them one by one, but under one lock, with one
        timestamp and as one LogBatch to each observer: per line, only masking is left."""
        with self._lock:
            if self._truncated or not lines:
                return
            mask = self.masker.mask
            texts = [mask(line) for line in lines]
            kept, size = self._within_cap(texts)
            self._logged += size
            if kept:
                batch = LogBatch(self._seq + 1, utcnow(), job_id, step_index, kept)
                self._seq += len(kept)
                for sink in self._batch_sinks:
                    sink(batch)
            if len(kept) < len(texts):
                self._truncate(job_id, step_index)

    def _within_cap(self, texts: list[str]) -> tuple[list[str], int]:
        """The leading texts that fit under the cap, and their bytes (newlines included)."""
        size = len("\n".join(texts).encode("utf-8", "replace")) + 1
        if self._logged + size <= self._max_bytes:
            return texts, size
        room, size = self._max_bytes - self._logged, 0
        for count, text in enumerate(texts):
            line = len(text.encode("utf-8", "replace")) + 1
            if size + line > room:
                return texts[:count], size
            size += line
        return texts, size

    def _truncate(self, job_id: str | None, step_index: int | None) -> None:
        self._truncated = True
        text = TRUNCATED_LINE.format(limit=self._max_bytes)
        self._emit(LogEntry(self._seq + 1, utcnow(), job_id, step_index, text, True))

    def _emit(self, entry: LogEntry) -> None:
        self._seq = entry.seq
        for observer in self._observers:
            observer.log(entry)

    def job_changed(self, job: JobReport) -> None:
        with self._lock:
            for observer in self._observers:
                observer.job_changed(job)

    def step_changed(self, step: StepReport) -> None:
        with self._lock:
            for observer in self._observers:
                observer.step_changed(step)

    def run_finished(self, status: str, error: str | None) -> None:
        with self._lock:
            for observer in self._observers:
                observer.run_finished(status, error)


def _batch_sink(observer: RunObserver) -> Callable[[LogBatch], None]:
    # An observer not derived from RunObserver may lack log_batch: it gets RunObserver's, line by line.
    return getattr(observer, "log_batch", None) or partial(RunObserver.log_batch, observer)
