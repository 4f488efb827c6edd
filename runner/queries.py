"""Record reads for the CLI and the API, and the bulk log insert; SQL filters and pages, never Python."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import datetime

from runner.database import db, peewee
from runner.models import BuildOutput, JobResult, LogLine, Run, StepResult
from runner.timestamps import utcnow

# 1,000 rows x 6 columns stays far below SQLite's limit of 32,766 bound parameters per statement.
_CHUNK_ROWS = 1000
_LOG_FIELDS = ("run", "seq", "timestamp", "job_id", "step_index", "text")
_LOG_COLUMNS = "run_id, seq, timestamp, job_id, step_index, text"


def list_runs(status: str | None = None, limit: int | None = None, offset: int = 0) -> list[Run]:
    """Runs newest first, optionally of one status; served by the (status, id) index."""
    query = Run.select().order_by(Run.id.desc())
    if status is not None:
        query = query.where(Run.status == status)
    if limit is not None or offset:
        query = query.limit(limit).offset(offset)
    return list(query)


def count_runs(status: str | None = None) -> int:
    query = Run.select()
    if status is not None:
        query = query.where(Run.status == status)
    return query.count()


def get_run(run_id: int) -> Run | None:
    return Run.get_or_none(Run.id == run_id)


def job_results(run_id: int) -> list[JobResult]:
    """Jobs in the order they started; those not started yet last, in the order they were recorded."""
    query = JobResult.select().where(JobResult.run == run_id)
    return list(query.order_by(JobResult.started_at.asc(nulls="last"), JobResult.id))


def step_results(run_id: int) -> list[StepResult]:
    """Steps grouped by job, in step order (the unique index's order)."""
    query = StepResult.select().where(StepResult.run == run_id)
    return list(query.order_by(StepResult.job_id, StepResult.step_index))


def iter_log_lines(run_id: int, since_seq: int = 0, batch: int = 5000) -> Iterator[LogLine]:
    """Lines with seq > since_seq in order, fetched `batch` at a time by seq, so memory stays flat."""
    while True:
        query = LogLine.select().where((LogLine.run == run_id) & (LogLine.seq > since_seq))
        lines = list(query.order_by(LogLine.seq).limit(batch))
        yield from lines
        if len(lines) < batch:
            return
        since_seq = lines[-1].seq


def last_log_seq(run_id: int) -> int:
    """The highest seq stored for the run, 0 when it has no lines."""
    return LogLine.select(peewee.fn.MAX(LogLine.seq)).where(LogLine.run == run_id).scalar() or 0


def append_log_line(run_id: int, text: str) -> int:
    """Add one line after the run's last (for events outside an execution, e.g. a lost worker); returns its seq."""
    seq = last_log_seq(run_id) + 1
    insert_log_lines([{"run": run_id, "seq": seq, "timestamp": utcnow(), "job_id": None, "step_index": None,
                       "text": text}])
    return seq


def insert_log_lines(rows: list[dict]) -> None:
    """Store lines given as dicts with keys run (the id), seq, timestamp, job_id, step_index, text.

    All or none: a duplicate (run, seq) raises IntegrityError and stores nothing. NUL becomes U+FFFD.
    """
    if not rows:
        return
    # Not peewee's insert_many: it spends ~95% of its time composing SQL value by value (~25,000 lines/s
    # on SQLite). One hand-built multi-row INSERT (SQLite) or a COPY (PostgreSQL, where psycopg2's
    # quoting of a multi-row INSERT is the bottleneck) writes the same rows 4-10 times faster.
    database = db.obj
    write = _copy if isinstance(database, peewee.PostgresqlDatabase) else _insert
    with db.atomic():
        for chunk in peewee.chunked(rows, _CHUNK_ROWS):
            write(database, chunk)


def _insert(database: peewee.Database, rows: list[dict]) -> None:
    marks = ", ".join([f"({', '.join([database.param] * len(_LOG_FIELDS))})"] * len(rows))
    values = [_storable(row[name]) for row in rows for name in _LOG_FIELDS]
    database.execute_sql(f"INSERT INTO log_lines ({_LOG_COLUMNS}) VALUES {marks}", values)


def _copy(database: peewee.Database, rows: list[dict]) -> None:
    text = "".join("\t".join(_copy_field(row[name]) for name in _LOG_FIELDS) + "\n" for row in rows)
    # The wrapper turns driver errors into peewee's (IntegrityError …), as execute_sql does.
    with peewee.__exception_wrapper__, database.cursor() as cursor:
        cursor.copy_expert(f"COPY log_lines ({_LOG_COLUMNS}) FROM STDIN", io.StringIO(text))


def _storable(value):
    # PostgreSQL text cannot hold NUL; replaced on both backends so a log reads back the same everywhere.
    return value.replace("\0", "\ufffd") if isinstance(value, str) else value


def _copy_field(value) -> str:
    """A value in COPY's text format: \\N for NULL, backslash escapes for its delimiters, NUL as _storable."""
    if value is None:
        return "\\N"
    if isinstance(value, str):  # a chain of replace() is ~7 times faster than str.translate here
        return (value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
                .replace("\0", "\ufffd"))
    if isinstance(value, datetime):
        return value.isoformat(" ")
    return str(value)


def build_outputs(run_id: int) -> list[BuildOutput]:
    return list(BuildOutput.select().where(BuildOutput.run == run_id).order_by(BuildOutput.id))
