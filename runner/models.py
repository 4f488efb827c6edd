"""The record tables (runs, jobs, steps, log lines, build outputs, run counts) as Peewee models; no queries, no I/O."""

from __future__ import annotations

import json
from typing import Any

from runner.database import db, peewee
from runner.timestamps import utcnow

RUN_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
RUN_TRIGGERS = ("cli", "api", "push", "schedule", "manual", "hook")
RESULT_STATUSES = ("pending", "running", "success", "failure", "cancelled", "skipped", "timed_out")
OUTPUT_TYPES = ("zip", "docker_image", "registry_image")


class JsonColumn:
    """Reads and writes the TextField `column` as JSON, so callers see Python data (NULL is None)."""

    def __init__(self, column: str) -> None:
        self.column = column

    def __get__(self, record: Any, owner: type | None = None) -> Any:
        if record is None:
            return self
        text = getattr(record, self.column)
        return None if text is None else json.loads(text)

    def __set__(self, record: Any, value: Any) -> None:
        setattr(record, self.column, None if value is None else json.dumps(value))


# Statuses and kinds are plain strings checked by the code that writes them, not CHECK constraints:
# adding a status later would otherwise mean rebuilding the table on SQLite.


class Record(peewee.Model):
    class Meta:
        database = db


class Run(Record):
    id = peewee.AutoField()
    status = peewee.CharField(max_length=16, default="pending")
    trigger = peewee.CharField(max_length=16)
    pipeline_name = peewee.TextField()
    pipeline_file = peewee.TextField(null=True)
    spec_yaml = peewee.TextField()
    inputs_json = peewee.TextField(default="{}")
    plan_json = peewee.TextField(null=True)
    steps_to_execute_json = peewee.TextField(null=True)  # the API's list of build steps
    git_repository_id = peewee.IntegerField(null=True, index=True)
    output_type = peewee.CharField(max_length=16, null=True)  # zip | docker_image | both
    registry_id = peewee.IntegerField(null=True)
    custom_parameters_json = peewee.TextField(null=True)
    event_json = peewee.TextField(null=True)  # what triggered the run: {"ref", "commit", "repository", …}
    created_at = peewee.DateTimeField(default=utcnow, index=True)
    queued_at = peewee.DateTimeField(null=True)  # set when the run is asked to execute; workers claim these
    started_at = peewee.DateTimeField(null=True)
    completed_at = peewee.DateTimeField(null=True)
    attempt = peewee.IntegerField(default=0)
    max_attempts = peewee.IntegerField(default=2)
    error = peewee.CharField(max_length=64, null=True)  # machine code: step_timeout, worker_lost …
    message = peewee.TextField(null=True)
    worker_id = peewee.CharField(max_length=255, null=True)
    heartbeat_at = peewee.DateTimeField(null=True)
    cancel_requested = peewee.BooleanField(default=False)
    idempotency_key = peewee.CharField(max_length=255, null=True, unique=True)

    inputs = JsonColumn("inputs_json")
    plan = JsonColumn("plan_json")
    steps_to_execute = JsonColumn("steps_to_execute_json")
    custom_parameters = JsonColumn("custom_parameters_json")
    event = JsonColumn("event_json")

    class Meta:
        table_name = "runs"
        # (status, started_at): stale-run and statistics scans; (status, id): the queue and filtered lists.
        indexes = ((("status", "started_at"), False), (("status", "id"), False))


class JobResult(Record):
    # index=False on the run foreign keys below: the unique index leads with run_id and serves them.
    run = peewee.ForeignKeyField(Run, backref="job_results", on_delete="CASCADE", index=False)
    job_id = peewee.TextField()  # expanded id, e.g. "build (linux, 3.11)"
    job_key = peewee.TextField()  # the key under `jobs:` in the YAML
    name = peewee.TextField()
    matrix_json = peewee.TextField(null=True)
    status = peewee.CharField(max_length=16, default="pending")
    started_at = peewee.DateTimeField(null=True)
    completed_at = peewee.DateTimeField(null=True)
    outputs_json = peewee.TextField(null=True)

    matrix = JsonColumn("matrix_json")
    outputs = JsonColumn("outputs_json")

    class Meta:
        table_name = "job_results"
        indexes = ((("run", "job_id"), True),)


class StepResult(Record):
    run = peewee.ForeignKeyField(Run, backref="step_results", on_delete="CASCADE", index=False)
    job_id = peewee.TextField()
    step_index = peewee.IntegerField()
    step_id = peewee.TextField(null=True)
    name = peewee.TextField()
    kind = peewee.CharField(max_length=8)  # run | uses
    uses = peewee.TextField(null=True)
    status = peewee.CharField(max_length=16, default="pending")
    outcome = peewee.CharField(max_length=16, null=True)  # before continue-on-error, as GitHub Actions
    exit_code = peewee.IntegerField(null=True)
    attempts = peewee.IntegerField(default=0)
    started_at = peewee.DateTimeField(null=True)
    completed_at = peewee.DateTimeField(null=True)
    outputs_json = peewee.TextField(null=True)
    error = peewee.TextField(null=True)

    outputs = JsonColumn("outputs_json")

    class Meta:
        table_name = "step_results"
        indexes = ((("run", "job_id", "step_index"), True),)


class LogLine(Record):
    # backref="+": no `run.log_lines` that would load a million rows by accident. On PostgreSQL, migration 9
    # replaces this key with triggers checking each run once per statement (the same refusal, the same cascade).
    run = peewee.ForeignKeyField(Run, backref="+", on_delete="CASCADE", index=False)
    seq = peewee.IntegerField()
    timestamp = peewee.DateTimeField()
    job_id = peewee.TextField(null=True)
    step_index = peewee.IntegerField(null=True)
    text = peewee.TextField()

    class Meta:
        table_name = "log_lines"
        # The primary key (run_id, seq) is the table's only index: a separate id column would add a
        # second index on PostgreSQL and slow the million-line inserts.
        primary_key = peewee.CompositeKey("run", "seq")


class BuildOutput(Record):
    run = peewee.ForeignKeyField(Run, backref="build_outputs", on_delete="CASCADE")
    output_type = peewee.CharField(max_length=16)  # zip | docker_image | registry_image
    file_path = peewee.TextField(null=True)
    file_size_bytes = peewee.BigIntegerField(null=True)
    checksum_sha256 = peewee.CharField(max_length=64, null=True)
    image_url = peewee.TextField(null=True)
    image_id = peewee.CharField(max_length=255, null=True)
    download_count = peewee.IntegerField(default=0)
    expires_at = peewee.DateTimeField(null=True, index=True)
    created_at = peewee.DateTimeField(default=utcnow)
    cleaned_at = peewee.DateTimeField(null=True)
    metadata_json = peewee.TextField(null=True)

    metadata = JsonColumn("metadata_json")

    class Meta:
        table_name = "build_outputs"


ALL_MODELS = (Run, JobResult, StepResult, LogLine, BuildOutput)


class RunCount(Record):
    """Runs created on one day with one status, output type and steps, and their build outputs: what list totals
    and statistics add up instead of counting runs. Only database triggers on runs and build_outputs write it
    (migration 8), in the writer's transaction, so it is as exact as the rows it counts."""

    day = peewee.DateField()  # of created_at, UTC
    status = peewee.CharField(max_length=16)
    output_type = peewee.CharField(max_length=16)  # "" for none: key columns are never NULL
    steps_to_execute_json = peewee.TextField()  # "" for none
    runs = peewee.BigIntegerField()
    outputs = peewee.BigIntegerField()

    class Meta:
        table_name = "run_counts"
        primary_key = peewee.CompositeKey("day", "status", "output_type", "steps_to_execute_json")
        indexes = ((("status", "day"), False),)  # a status's total


class ScheduleFire(Record):
    """One scheduled minute of one pipeline, fired once: the unique key makes racing schedulers agree."""

    pipeline = peewee.TextField()  # the pipeline's key: its file path, or "registered:<name>"
    scheduled_at = peewee.DateTimeField()  # the cron minute, naive UTC
    run_id = peewee.IntegerField(null=True)
    fired_at = peewee.DateTimeField(default=utcnow)
    scheduler_id = peewee.CharField(max_length=255, null=True)

    class Meta:
        table_name = "schedule_fires"
        indexes = ((("pipeline", "scheduled_at"), True),)


class WorkerRecord(Record):
    """A worker process (embedded in `forgeyard serve` or `forgeyard worker`) and its last heartbeat."""

    worker_id = peewee.CharField(max_length=255, unique=True)
    hostname = peewee.CharField(max_length=255)
    pid = peewee.IntegerField()
    concurrency = peewee.IntegerField()
    started_at = peewee.DateTimeField(default=utcnow)
    heartbeat_at = peewee.DateTimeField(default=utcnow, index=True)
    stopped_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "workers"


SCALE_OUT_MODELS = (ScheduleFire, WorkerRecord)
