"""Fills a fresh Forgeyard database for row 7 with bulk inserts: runs, log lines and build outputs; no timing.

The schema comes from runner.database.connect (the real migrations); rows are written with executemany (SQLite)
or COPY (PostgreSQL), every column the model has given a value or its model default, so a new column with a
default does not break the seeding.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

SPREAD_DAYS = 90
LINES_PER_RUN = 10
OUTPUT_EVERY = 4  # one build output per this many runs
# Deep pages of ?status=failed&offset=90000 must exist: most seeded runs failed (see the row's note).
STATUS_SHARES = (("failed", 0.92), ("completed", 0.07), ("cancelled", 0.01))
SPEC = "name: seeded\njobs:\n  build:\n    steps:\n      - uses: clone_repo\n      - uses: create_zip\n"


@dataclass(frozen=True)
class SeedSize:
    runs: int
    log_lines: int


def _statuses(count: int, rng: random.Random) -> list[str]:
    """Exactly the shares of STATUS_SHARES, shuffled (so every 100 runs hold 92 failed ones)."""
    pattern = [name for name, share in STATUS_SHARES for _ in range(round(share * 100))]
    statuses = []
    for _ in range(0, count, len(pattern)):
        rng.shuffle(pattern)
        statuses += pattern
    return statuses[:count]


def _model_rows(model, rows: Iterator[dict[str, Any]]) -> tuple[list[str], Iterator[list[Any]]]:
    """Column names and value lists for `model`, filling what a row leaves out with the model's default."""
    fields = [field for field in model._meta.sorted_fields if not (field.primary_key and field.name == "id")]
    columns = [field.column_name for field in fields]

    def values() -> Iterator[list[Any]]:
        for row in rows:
            out = []
            for field in fields:
                if field.name in row:
                    out.append(row[field.name])
                elif field.default is not None:
                    out.append(field.default() if callable(field.default) else field.default)
                else:
                    out.append(None)
            yield out

    return columns, values()


def _runs(size: SeedSize, now: datetime, rng: random.Random) -> Iterator[dict[str, Any]]:
    step = timedelta(days=SPREAD_DAYS) / size.runs
    start = now - timedelta(days=SPREAD_DAYS)
    for number, status in enumerate(_statuses(size.runs, rng), start=1):
        created = start + step * number
        api = number % 2 == 0
        yield {"id": number, "status": status, "trigger": "api" if api else "cli", "pipeline_name": "seeded",
               "spec_yaml": SPEC, "inputs_json": "{}", "created_at": created, "queued_at": created,
               "started_at": created + timedelta(seconds=1),
               "completed_at": created + timedelta(seconds=30 + number % 60),
               "steps_to_execute_json": '["clone_repo", "create_zip"]' if api else None,
               "output_type": "zip" if api else None, "attempt": 1, "max_attempts": 2, "cancel_requested": False,
               "error": "step_failed" if status == "failed" else None}


def _log_lines(size: SeedSize, now: datetime) -> Iterator[dict[str, Any]]:
    per_run = max(1, size.log_lines // size.runs)
    step = timedelta(days=SPREAD_DAYS) / size.runs
    start = now - timedelta(days=SPREAD_DAYS)
    for run in range(1, size.runs + 1):
        created = start + step * run
        for seq in range(1, per_run + 1):
            yield {"run": run, "seq": seq, "timestamp": created + timedelta(milliseconds=seq), "job_id": "build",
                   "step_index": seq % 3, "text": f"[seeded] run {run} line {seq}: compressing src/lib/gen/c{seq:02d}"}


def _outputs(size: SeedSize, now: datetime) -> Iterator[dict[str, Any]]:
    step = timedelta(days=SPREAD_DAYS) / size.runs
    start = now - timedelta(days=SPREAD_DAYS)
    for run in range(OUTPUT_EVERY, size.runs + 1, OUTPUT_EVERY):
        created = start + step * run
        yield {"run": run, "output_type": "zip", "file_path": f"seed{run}/open_webui.zip", "file_size_bytes": 1 << 20,
               "checksum_sha256": "0" * 64, "created_at": created, "expires_at": created + timedelta(days=7),
               "download_count": 0}


def seed(url: str, size: SeedSize) -> dict[str, int]:
    """Migrate the empty database at `url` with Forgeyard's own code, then bulk-insert the rows."""
    from runner import database
    from runner.models import BuildOutput, LogLine, Run

    database.connect(url)
    database.close()
    now = datetime.utcnow().replace(tzinfo=None) if hasattr(datetime, "utcnow") else datetime.now()
    rng = random.Random(7)
    tables = ((Run, _runs(size, now, rng)), (LogLine, _log_lines(size, now)), (BuildOutput, _outputs(size, now)))
    write = _sqlite if url.startswith("sqlite:///") else _postgres
    counts = {}
    for model, rows in tables:
        columns, values = _model_rows(model, rows)
        if model is Run:
            columns = ["id", *columns]
            values = ([row_id, *row] for row_id, row in zip(range(1, size.runs + 1), values, strict=False))
        counts[model._meta.table_name] = write(url, model._meta.table_name, columns, values)
    if not url.startswith("sqlite:///"):
        _postgres_finish(url)
    return counts


def _sqlite(url: str, table: str, columns: list[str], values: Iterator[list[Any]]) -> int:
    import sqlite3

    connection = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        connection.execute("PRAGMA synchronous=OFF")
        marks = ", ".join("?" * len(columns))
        count = 0
        with connection:
            batch: list[list[Any]] = []
            for row in values:
                batch.append([_sqlite_value(value) for value in row])
                if len(batch) == 20_000:
                    connection.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", batch)
                    count += len(batch)
                    batch = []
            if batch:
                connection.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", batch)
                count += len(batch)
        return count
    finally:
        connection.close()


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")  # peewee's storage format for DateTimeField
    if isinstance(value, bool):
        return int(value)
    return value


def _copy_value(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _postgres(url: str, table: str, columns: list[str], values: Iterator[list[Any]]) -> int:
    import psycopg2

    connection = psycopg2.connect(url)
    count = 0
    try:
        with connection, connection.cursor() as cursor:
            buffer = io.StringIO()
            for row in values:
                buffer.write("\t".join(_copy_value(value) for value in row) + "\n")
                count += 1
                if count % 100_000 == 0:
                    buffer.seek(0)
                    cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", buffer)
                    buffer = io.StringIO()
            buffer.seek(0)
            cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", buffer)
    finally:
        connection.close()
    return count


def _postgres_finish(url: str) -> None:
    """Move the id sequence past the seeded ids and ANALYZE, as autovacuum would on a table grown over time."""
    import psycopg2

    connection = psycopg2.connect(url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT setval(pg_get_serial_sequence('runs', 'id'), (SELECT MAX(id) FROM runs))")
            cursor.execute("ANALYZE")
    finally:
        connection.close()
