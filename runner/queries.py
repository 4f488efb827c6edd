"""Record reads for the CLI and the API, and the bulk log insert; SQL filters and pages, never Python."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from functools import cache
from itertools import chain
from typing import Any

from runner.database import db, peewee
from runner.events import LogBatch
from runner.models import BuildOutput, JobResult, LogLine, Run, RunCount, StepResult
from runner.timestamps import utcnow

# 1,000 rows x 6 columns stays far below SQLite's limit of 32,766 bound parameters per statement.
_CHUNK_ROWS = 1000
_LOG_COLUMNS = "run_id, seq, timestamp, job_id, step_index, text"
_LOG_WIDTH = _LOG_COLUMNS.count(",") + 1
_COPY_SPECIAL = ("\\", "\t", "\n", "\r", "\0")  # what _copy_field changes in a text


def list_runs(status: str | None = None, limit: int | None = None, offset: int = 0, before: int | None = None,
              total: int | None = None, columns: Sequence[peewee.Field] = ()) -> list[Run]:
    """Runs newest first, optionally of one status and with ids below `before` (a keyset page); only `columns`
    of them when given.

    The page's ids come from the (status, id) index alone, then only those rows are read: an offset walks index
    entries, not rows. Given the `total` of the status (count_runs, in the same snapshot), a page past the middle
    is reached from the oldest run instead, through the fewer entries.
    """
    ids = Run.select(Run.id)
    if status is not None:
        ids = ids.where(Run.status == status)
    if before is not None:
        ids = ids.where(Run.id < before)
    if total is not None and before is None and limit is not None and offset > total // 2:
        skip = total - offset - limit  # the same page, counted from the other end
        if limit + min(0, skip) <= 0:
            return []
        ids = ids.order_by(Run.id).limit(limit + min(0, skip)).offset(max(0, skip))
    else:
        ids = ids.order_by(Run.id.desc())
        if limit is not None or offset:
            ids = ids.limit(limit).offset(offset)
    return list(Run.select(*columns).where(Run.id.in_(ids)).order_by(Run.id.desc()))


def count_runs(status: str | None = None) -> int:
    """Runs of a status, or all: a sum over the few run_counts rows the database triggers keep exact."""
    query = RunCount.select(peewee.fn.SUM(RunCount.runs))
    if status is not None:
        query = query.where(RunCount.status == status)
    return int(query.scalar() or 0)


def snapshot() -> AbstractContextManager:
    """A read transaction whose statements all see one moment (SQLite's do; PostgreSQL's need REPEATABLE READ)."""
    if isinstance(db.obj, peewee.PostgresqlDatabase):
        return db.atomic(isolation_level="REPEATABLE READ")
    return db.atomic()


def get_run(run_id: int) -> Run | None:
    return Run.get_or_none(Run.id == run_id)


def run_status(run_id: int) -> str | None:
    return Run.select(Run.status).where(Run.id == run_id).scalar()


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


def log_tails(run_ids: list[int], lines: int) -> dict[int, list[str]]:
    """The last `lines` log lines of each run (oldest first), for a whole page of runs in one query.

    Per run, the seq `lines` from the end bounds a primary-key range: a run with a million lines costs as
    little as one with ten. Written as SQL: peewee would take longer to compose it than the database to run it.
    """
    if not run_ids:
        return {}
    marks = ", ".join([db.obj.param] * len(run_ids))
    cursor = db.execute_sql(
        "SELECT r.id, l.text FROM runs r JOIN log_lines l ON l.run_id = r.id AND l.seq >= COALESCE("
        f"(SELECT t.seq FROM log_lines t WHERE t.run_id = r.id ORDER BY t.seq DESC LIMIT 1 OFFSET {int(lines) - 1}), 0)"
        f" WHERE r.id IN ({marks}) ORDER BY r.id, l.seq", run_ids)
    tails: dict[int, list[str]] = {}
    for run_id, text in cursor:
        tails.setdefault(run_id, []).append(text)
    return tails


def append_log_line(run_id: int, text: str) -> int:
    """Add one line after the run's last (for events outside an execution, e.g. a lost worker); returns its seq."""
    seq = last_log_seq(run_id) + 1
    insert_log_lines([{"run": run_id, "seq": seq, "timestamp": utcnow(), "job_id": None, "step_index": None,
                       "text": text}])
    return seq


def insert_record(model: type[peewee.Model], values: dict[str, Any]) -> int:
    """Insert one row of `model` (values by field name) and return its id, as model.create(**values) does.

    For the recorder's frequent small writes: peewee takes ~0.4 ms of CPU to compose a statement, ten times what
    SQLite takes to run it, so each statement's text is composed once per database kind, model and set of fields.
    """
    database = db.obj
    postgres = isinstance(database, peewee.PostgresqlDatabase)  # psycopg2 has no lastrowid: RETURNING instead
    sql = _insert_sql(model, tuple(values), database.param, database.quote, postgres)
    cursor = database.execute_sql(sql, _db_values(model, values))
    return cursor.fetchone()[0] if postgres else cursor.lastrowid


def update_record(model: type[peewee.Model], row_id: int, values: dict[str, Any]) -> None:
    """Set `values` (by field name) on the row of `model` with id `row_id`, as insert_record does it."""
    database = db.obj
    sql = _update_sql(model, tuple(values), database.param, database.quote)
    database.execute_sql(sql, [*_db_values(model, values), row_id])


def _db_values(model: type[peewee.Model], values: dict[str, Any]) -> list:
    fields = model._meta.fields
    return [fields[name].db_value(value) for name, value in values.items()]


@cache
def _insert_sql(model: type[peewee.Model], names: tuple[str, ...], param: str, quote: str, returning: bool) -> str:
    columns = ", ".join(_column(model, name, quote) for name in names)
    returned = f" RETURNING {_column(model, 'id', quote)}" if returning else ""
    return f"INSERT INTO {_table(model, quote)} ({columns}) VALUES ({', '.join([param] * len(names))}){returned}"


@cache
def _update_sql(model: type[peewee.Model], names: tuple[str, ...], param: str, quote: str) -> str:
    settings = ", ".join(f"{_column(model, name, quote)} = {param}" for name in names)
    return f"UPDATE {_table(model, quote)} SET {settings} WHERE {_column(model, 'id', quote)} = {param}"


def _table(model: type[peewee.Model], quote: str) -> str:
    return model._meta.table_name.join(quote)  # a database's quote is its pair of quote characters


def _column(model: type[peewee.Model], name: str, quote: str) -> str:
    return model._meta.fields[name].column_name.join(quote)


def insert_log_lines(rows: list[dict]) -> None:
    """Store lines given as dicts with keys run (the id), seq, timestamp, job_id, step_index, text (see below)."""
    _store([(row["run"], LogBatch(row["seq"], row["timestamp"], row["job_id"], row["step_index"], [row["text"]]))
            for row in rows])


def insert_log_batches(run_id: int, batches: Sequence[LogBatch]) -> None:
    """Store a run's lines given as LogBatches (the lines of one batch share a timestamp, job and step).

    All or none: a duplicate (run, seq) raises IntegrityError and stores nothing. NUL becomes U+FFFD.
    """
    _store([(run_id, batch) for batch in batches])


def _store(batches: list[tuple[int, LogBatch]]) -> None:
    if not batches:
        return
    # Not peewee's insert_many: it spends ~95% of its time composing SQL value by value (~25,000 lines/s
    # on SQLite). One hand-built multi-row INSERT (SQLite) or one COPY (PostgreSQL, where psycopg2's
    # quoting of a multi-row INSERT is the bottleneck) writes the same rows 4-10 times faster; what a batch's
    # lines share is converted once per batch, not once per line.
    database = db.obj
    with db.transaction():  # inside a caller's transaction (the recorder's), a part of it: no savepoint
        if isinstance(database, peewee.PostgresqlDatabase):
            _copy(database, batches)
        else:
            for chunk in _chunks(_rows(batches)):
                _insert(database, chunk)


def _rows(batches: list[tuple[int, LogBatch]]) -> list[tuple]:
    rows: list[tuple] = []
    for run_id, batch in batches:
        stamp = str(batch.timestamp)  # the text sqlite3's default adapter makes of a datetime (isoformat " ")
        job_id, step_index = _storable(batch.job_id), batch.step_index
        texts = [_storable(text) for text in batch.texts] if "\0" in "".join(batch.texts) else batch.texts
        rows += [(run_id, seq, stamp, job_id, step_index, text) for seq, text in enumerate(texts, batch.first_seq)]
    return rows


def _chunks(rows: list[tuple]) -> Iterator[list[tuple]]:
    """Slices of _CHUNK_ROWS rows, the rest in power-of-two sizes: SQLite keeps every distinct statement prepared
    (up to 128, a 1,000-row INSERT weighing ~0.3 MB), so few distinct sizes keep that cache small."""
    start = 0
    while start < len(rows):
        left = len(rows) - start
        size = _CHUNK_ROWS if left >= _CHUNK_ROWS else 1 << (left.bit_length() - 1)
        yield rows[start:start + size]
        start += size


def _insert(database: peewee.Database, rows: list[tuple]) -> None:
    marks = ", ".join([f"({', '.join([database.param] * _LOG_WIDTH)})"] * len(rows))
    database.execute_sql(f"INSERT INTO log_lines ({_LOG_COLUMNS}) VALUES {marks}", list(chain.from_iterable(rows)))


def _copy(database: peewee.Database, batches: list[tuple[int, LogBatch]]) -> None:
    lines: list[str] = []
    for run_id, batch in batches:
        shared = "\t".join(map(_copy_field, (batch.timestamp, batch.job_id, batch.step_index)))
        joined = "".join(batch.texts)
        plain = not any(special in joined for special in _COPY_SPECIAL)  # then no line needs escaping
        texts = batch.texts if plain else map(_copy_field, batch.texts)
        lines += [f"{run_id}\t{seq}\t{shared}\t{text}\n" for seq, text in enumerate(texts, batch.first_seq)]
    # The wrapper turns driver errors into peewee's (IntegrityError …), as execute_sql does.
    with peewee.__exception_wrapper__, database.cursor() as cursor:
        # Bytes, said to be UTF-8 whatever the client encoding: a StringIO would hold 4 bytes a character.
        cursor.copy_expert(f"COPY log_lines ({_LOG_COLUMNS}) FROM STDIN (ENCODING 'UTF8')",
                           io.BytesIO("".join(lines).encode()))


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
