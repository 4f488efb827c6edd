"""Tests for the records layer (database, models, migrations, queries) against SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import deque
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from runner import database, migrations, queries
from runner import recorder as recorder_module
from runner.database import peewee
from runner.events import EventHub, LogBatch, LogEntry, RunObserver, StepReport
from runner.masking import SecretMasker
from runner.models import BuildOutput, JobResult, LogLine, Run, StepResult
from runner.recorder import Recorder
from runner.timestamps import utcnow

ROOT = Path(__file__).resolve().parents[1]


def new_run(**fields) -> Run:
    defaults = {"trigger": "cli", "pipeline_name": "branded", "spec_yaml": "name: branded\n"}
    return Run.create(**{**defaults, **fields})


def log_rows(run_id: int, seqs, job_id: str | None = "build") -> list[dict]:
    now = utcnow()
    return [{"run": run_id, "seq": seq, "timestamp": now, "job_id": job_id, "step_index": 0,
             "text": f"line {seq}"} for seq in seqs]


def index_columns(connected: peewee.Database, table: str) -> list[list[str]]:
    if isinstance(connected, peewee.SqliteDatabase):
        names = [row[1] for row in connected.execute_sql(f"PRAGMA index_list({table})")]
        return [[row[2] for row in connected.execute_sql(f"PRAGMA index_info({name})")] for name in names]
    return [index.columns for index in connected.get_indexes(table)]


# --- records written and read back ---------------------------------------------------------------------


def test_a_run_with_jobs_steps_logs_and_outputs_reads_back(db):
    started = datetime(2026, 1, 8, 10, 0, 0, 123456)
    run = new_run(trigger="api", inputs={"who": "world"}, steps_to_execute=["clone_repo", "create_zip"],
                  custom_parameters={"branding": "acme"}, output_type="zip", git_repository_id=7,
                  started_at=started, status="running")
    later = started + timedelta(seconds=1)
    JobResult.create(run=run, job_id="test", job_key="test", name="test")  # not started yet
    JobResult.create(run=run, job_id="build (linux, 3.11)", job_key="build", name="build",
                     matrix={"os": "linux", "python": "3.11"}, status="success", started_at=later)
    JobResult.create(run=run, job_id="lint", job_key="lint", name="lint", status="success",
                     started_at=started)
    for index in (1, 0):
        StepResult.create(run=run, job_id="lint", step_index=index, name=f"s{index}", kind="run",
                          status="success", exit_code=0, outputs={"n": index})
    StepResult.create(run=run, job_id="build (linux, 3.11)", step_index=0, name="checkout", kind="uses",
                      uses="clone_repo", status="failure", outcome="failure", exit_code=1, error="boom")
    queries.insert_log_lines(log_rows(run.id, range(1, 4)))
    BuildOutput.create(run=run, output_type="zip", file_path="/a.zip", file_size_bytes=5 * 2**32,
                       checksum_sha256="ab" * 32, metadata={"files": 3})
    BuildOutput.create(run=run, output_type="docker_image", image_url="reg/app:1", image_id="sha256:1")

    got = queries.get_run(run.id)
    assert (got.status, got.trigger, got.pipeline_name, got.output_type, got.git_repository_id) == (
        "running", "api", "branded", "zip", 7)
    assert got.inputs == {"who": "world"}
    assert got.steps_to_execute == ["clone_repo", "create_zip"]
    assert got.custom_parameters == {"branding": "acme"}
    assert got.plan is None and got.error is None and got.cancel_requested is False
    assert (got.attempt, got.max_attempts) == (0, 2)
    assert got.started_at == started and got.started_at.tzinfo is None
    assert got.created_at.tzinfo is None and abs(got.created_at - utcnow()) < timedelta(minutes=1)
    assert queries.get_run(run.id + 1) is None

    assert [job.job_id for job in queries.job_results(run.id)] == ["lint", "build (linux, 3.11)", "test"]
    assert queries.job_results(run.id)[1].matrix == {"os": "linux", "python": "3.11"}
    steps = queries.step_results(run.id)
    assert [(s.job_id, s.step_index) for s in steps] == [("build (linux, 3.11)", 0), ("lint", 0), ("lint", 1)]
    assert (steps[0].uses, steps[0].exit_code, steps[0].error) == ("clone_repo", 1, "boom")
    assert steps[2].outputs == {"n": 1}
    assert [line.text for line in queries.iter_log_lines(run.id)] == ["line 1", "line 2", "line 3"]
    assert queries.last_log_seq(run.id) == 3
    outputs = queries.build_outputs(run.id)
    assert [o.output_type for o in outputs] == ["zip", "docker_image"]
    assert outputs[0].file_size_bytes == 5 * 2**32 and outputs[0].metadata == {"files": 3}
    assert outputs[1].download_count == 0 and outputs[1].metadata is None


def test_list_runs_newest_first_filtered_and_paged(db):
    ids = {status: [] for status in ("pending", "completed", "failed")}
    for n in range(9):
        status = ("pending", "completed", "failed")[n % 3]
        ids[status].append(new_run(status=status).id)
    everything = sorted(sum(ids.values(), []), reverse=True)

    assert [run.id for run in queries.list_runs()] == everything
    assert [run.id for run in queries.list_runs(limit=4)] == everything[:4]
    assert [run.id for run in queries.list_runs(limit=4, offset=4)] == everything[4:8]
    assert [run.id for run in queries.list_runs(offset=7)] == everything[7:]
    assert [run.id for run in queries.list_runs(status="failed")] == ids["failed"][::-1]
    assert [run.id for run in queries.list_runs(status="failed", limit=1, offset=1)] == [ids["failed"][1]]
    assert queries.list_runs(status="running") == []
    assert (queries.count_runs(), queries.count_runs("completed"), queries.count_runs("running")) == (9, 3, 0)


def test_iter_log_lines_resumes_after_since_seq_across_batches(db):
    run, other = new_run(), new_run()
    queries.insert_log_lines(log_rows(run.id, range(1, 24)))
    queries.insert_log_lines(log_rows(other.id, range(1, 5)))

    assert [line.seq for line in queries.iter_log_lines(run.id, batch=5)] == list(range(1, 24))
    assert [line.seq for line in queries.iter_log_lines(run.id, since_seq=10, batch=5)] == list(range(11, 24))
    assert [line.seq for line in queries.iter_log_lines(run.id, since_seq=20, batch=3)] == [21, 22, 23]
    assert list(queries.iter_log_lines(run.id, since_seq=23)) == []
    assert [line.seq for line in queries.iter_log_lines(run.id, since_seq=15, batch=8)] == list(range(16, 24))
    assert [queries.last_log_seq(run_id) for run_id in (run.id, other.id, other.id + 1)] == [23, 4, 0]


def test_a_log_seq_is_unique_per_run_and_a_failed_batch_stores_nothing(db):
    run = new_run()
    queries.insert_log_lines(log_rows(run.id, [1, 2]))
    with pytest.raises(peewee.IntegrityError):
        queries.insert_log_lines(log_rows(run.id, [3, 2]))
    assert [line.seq for line in queries.iter_log_lines(run.id)] == [1, 2]
    queries.insert_log_lines(log_rows(new_run().id, [1, 2]))  # the same seq in another run is fine
    assert LogLine.select().count() == 4


def test_log_text_reads_back_as_written(db):
    run = new_run()
    texts = ["tab\there", "new\nline", "cr\rreturn", "back\\slash \\N \\t", "ünïcødé ✓ 🚀", "", " \\",
             "nul\0byte"]
    rows = log_rows(run.id, range(1, len(texts) + 1), job_id=None)
    for row, text in zip(rows, texts, strict=True):
        row.update(text=text, step_index=None)
    queries.insert_log_lines(rows)

    lines = list(queries.iter_log_lines(run.id))
    assert [line.text for line in lines] == [*texts[:-1], "nul\ufffdbyte"]  # PostgreSQL cannot store NUL
    assert {(line.job_id, line.step_index) for line in lines} == {(None, None)}
    assert {line.timestamp for line in lines} == {rows[0]["timestamp"]}


def test_deleting_a_run_deletes_its_records(db):
    run, kept = new_run(), new_run()
    for record in (run, kept):
        JobResult.create(run=record, job_id="a", job_key="a", name="a")
        StepResult.create(run=record, job_id="a", step_index=0, name="s", kind="run")
        BuildOutput.create(run=record, output_type="zip", file_path="/x.zip")
        queries.insert_log_lines(log_rows(record.id, range(1, 11)))

    run.delete_instance()

    for model in (JobResult, StepResult, LogLine, BuildOutput):
        assert {row.run_id for row in model.select()} == {kept.id}, model


def test_log_lines_of_a_run_that_does_not_exist_are_refused(db):
    run = new_run()
    with pytest.raises(peewee.IntegrityError):
        queries.insert_log_lines([*log_rows(run.id, [1]), *log_rows(run.id + 1, [1])])
    assert LogLine.select().count() == 0


def test_log_lines_have_one_index_on_run_and_seq(db):
    assert index_columns(db, "log_lines") == [["run_id", "seq"]]



def test_log_rows_are_inserted_in_statements_of_few_sizes():
    # SQLite keeps every distinct statement prepared: a size per batch would fill its cache with large INSERTs.
    sizes = {len(chunk) for count in range(1, 2500) for chunk in queries._chunks(list(range(count)))}
    assert sizes == {1000, *(2 ** power for power in range(10))}

class _Kept(RunObserver):
    """Every line an observer is given, as (seq, text, system)."""

    def __init__(self) -> None:
        self.lines: list[tuple[int, str, bool]] = []

    def log(self, entry: LogEntry) -> None:
        self.lines.append((entry.seq, entry.text, entry.system))


def test_lines_logged_together_are_masked_numbered_and_capped_as_one_by_one():
    chunks = [["one hunter2secret", "two"], [], ["", "three"], ["four is longer", "five", "six"], ["seven"]]
    fed = {"one by one": _Kept(), "together": _Kept()}
    for way, kept in fed.items():
        hub = EventHub([kept], SecretMasker(["hunter2secret"]), first_seq=7, max_bytes=40)
        for chunk in chunks:
            if way == "together":
                hub.log_many("build", 0, chunk)
            for line in chunk if way == "one by one" else ():
                hub.log("build", 0, line)
        hub.log("build", None, "Job build: success", system=True)
    assert fed["together"].lines == fed["one by one"].lines
    texts = [text for _, text, _ in fed["together"].lines]
    assert texts[:6] == ["one ***", "two", "", "three", "four is longer", "five"]  # 39 bytes with newlines
    assert texts[6].startswith("Log truncated: ") and texts[7:] == ["Job build: success"]
    assert [seq for seq, _, _ in fed["together"].lines] == list(range(7, 15))


def test_the_recorder_stores_lines_before_a_later_status_and_tells_watchers(db):
    run = new_run()
    recorder = Recorder(run.id)
    told = threading.Event()
    stop_watching = recorder_module.watch(run.id, told.set)
    hub = EventHub([recorder], SecretMasker())
    hub.log_many("build", 0, [f"line {n}" for n in range(1, 2501)])
    hub.log("build", 0, "one more")
    hub.step_changed(StepReport("build", 0, None, "print", "run", status="success"))
    recorder.close()
    stop_watching()

    assert [(line.seq, line.text) for line in queries.iter_log_lines(run.id)] == [
        *((n, f"line {n}") for n in range(1, 2501)), (2501, "one more")]
    assert [step.status for step in queries.step_results(run.id)] == ["success"] and told.is_set()
    told.clear()
    recorder = Recorder(run.id)
    EventHub([recorder], SecretMasker(), first_seq=2502).log("build", 0, "unwatched")
    recorder.close()
    assert not told.is_set()

def test_the_recorder_writes_a_take_in_one_transaction_and_a_step_once(db):
    run = new_run()
    recorder = Recorder(run.id)
    started = StepReport("build", 0, None, "print", "run", status="running", started_at=utcnow())
    finished = StepReport("build", 0, None, "print", "run", status="success", exit_code=0,
                          started_at=started.started_at, completed_at=utcnow())
    statements: list[str] = []
    db.query_hooks.append(lambda event: statements.append(event.sql))
    try:  # what the writer would take after a short step: its start, its lines and its end
        recorder._write(deque([started, LogBatch(1, utcnow(), "build", 0, ["one", "two"]),
                               LogEntry(3, utcnow(), "build", 0, "three"), finished]))
    finally:
        db.query_hooks.clear()
    recorder.close()

    assert len([sql for sql in statements if "step_results" in sql]) == 1  # written once, ended
    [step] = queries.step_results(run.id)
    assert (step.status, step.exit_code, step.completed_at) == ("success", 0, finished.completed_at)
    assert [line.text for line in queries.iter_log_lines(run.id)] == ["one", "two", "three"]


def test_a_step_still_running_at_a_write_is_recorded_running(db):
    run = new_run()
    recorder = Recorder(run.id)
    step = StepReport("build", 0, None, "sleep", "run", status="running", started_at=utcnow())
    recorder.step_changed(step)
    deadline = time.monotonic() + 30
    while [s.status for s in queries.step_results(run.id)] != ["running"]:
        assert time.monotonic() < deadline, "a running step was not recorded while it ran"
        time.sleep(0.01)
    step.status, step.completed_at = "success", utcnow()
    recorder.step_changed(step)
    recorder.close()
    assert [s.status for s in queries.step_results(run.id)] == ["success"]


def test_records_written_by_hand_built_sql_read_back_as_peewee_writes_them(db):
    run = new_run()
    moment = datetime(2026, 1, 8, 10, 0, 0, 123456)
    values = {"run": run.id, "job_id": "build", "step_id": None, "name": "ünï ✓", "kind": "run", "uses": None,
              "status": "running", "outcome": None, "exit_code": None, "attempts": 1, "started_at": moment,
              "completed_at": None, "outputs_json": "{}", "error": None}
    ids = [queries.insert_record(StepResult, {**values, "step_index": 0}),
           StepResult.create(**values, step_index=1).id]
    later = {"status": "failure", "exit_code": 2, "completed_at": moment.replace(microsecond=0), "error": "x'y"}
    queries.update_record(StepResult, ids[0], later)
    StepResult.update(**later).where(StepResult.id == ids[1]).execute()

    rows = [db.execute_sql("SELECT * FROM step_results WHERE id = " + db.param, [row_id]).fetchone()[3:]
            for row_id in ids]  # as stored, past id, run_id and job_id
    assert rows[0][0] == 0 and rows[1][0] == 1 and rows[0][1:] == rows[1][1:]
    assert StepResult.get(StepResult.step_index == 0).id == ids[0]  # the id returned is the row's


def test_lines_logged_together_read_back_as_written(db):
    run = new_run()
    stamps = [datetime(2026, 1, 8, 10, 0, 0), datetime(2026, 1, 8, 10, 0, 1, 5)]  # without and with microseconds
    texts = ["plain", "tab\there", "back\\slash \\N", "nul\0byte", "ünïcødé ✓", "", "cr\rreturn"]
    queries.insert_log_batches(run.id, [LogBatch(1, stamps[0], "build", 0, texts),
                                        LogBatch(8, stamps[1], None, None, ["only", "plain"])])

    lines = [(line.seq, line.timestamp, line.job_id, line.step_index, line.text)
             for line in queries.iter_log_lines(run.id)]
    stored = [text.replace("\0", "\ufffd") for text in texts]  # PostgreSQL cannot store NUL
    assert lines == [*((seq, stamps[0], "build", 0, text) for seq, text in enumerate(stored, 1)),
                     (8, stamps[1], None, None, "only"), (9, stamps[1], None, None, "plain")]


# --- connections and migrations --------------------------------------------------------------------------


def test_connect_again_with_the_same_url_returns_the_same_database(db, database_url):
    assert database.connect(database_url) is db


def test_sqlite_connections_use_wal_and_wait_for_locks(tmp_path):
    sqlite = database.connect(f"sqlite:///{tmp_path / 'new' / 'folder' / 'f.db'}")
    try:
        assert (tmp_path / "new" / "folder" / "f.db").exists()
        names = ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")
        assert [sqlite.pragma(name) for name in names] == ["wal", 10000, 1, 1]  # synchronous 1 is NORMAL
    finally:
        database.close()


@pytest.mark.parametrize("url", ["mysql://root:hunter2@db/fy", "postgres://u:hunter2@db/fy", "/tmp/fy.db"])
def test_an_unknown_scheme_is_a_clear_error_without_the_password(url):
    with pytest.raises(ValueError) as error:
        database.connect(url)
    assert str(error.value) == "FORGEYARD_DATABASE_URL must start with sqlite:/// or postgresql://"


def test_a_postgresql_connection_error_does_not_show_the_password():
    with pytest.raises(peewee.OperationalError) as error:
        database.connect("postgresql://forgeyard:hunter2@127.0.0.1:1/forgeyard")
    assert "hunter2" not in str(error.value) and "hunter2" not in repr(error.value.args)


def test_migrating_again_is_a_no_op(db):
    run = new_run()
    statements = []
    db.query_hooks.append(lambda event: statements.append(event.sql))
    try:
        migrations.migrate(db)
    finally:
        db.query_hooks.clear()
    assert not [sql for sql in statements if not sql.lstrip().upper().startswith("SELECT")]
    assert [(v.version, v.name) for v in migrations.SchemaVersion.select()] == [
        (version, name) for version, name, _ in migrations.MIGRATIONS]
    assert queries.get_run(run.id) is not None


def test_a_second_migration_is_applied_once(db, monkeypatch):
    from playhouse.migrate import SchemaMigrator
    from playhouse.migrate import migrate as run_operations

    calls = []

    def add_runs_note(database):
        calls.append(database)
        migrator = SchemaMigrator.from_database(database)
        run_operations(migrator.add_column("runs", "note", peewee.TextField(null=True)))

    run = new_run()
    latest = migrations.MIGRATIONS[-1][0]
    second = (latest + 1, "add runs.note", add_runs_note)
    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, second])
    migrations.migrate(db)
    migrations.migrate(db)

    assert calls == [db]
    assert migrations.current_version() == latest + 1
    assert "note" in [column.name for column in db.get_columns("runs")]
    assert queries.get_run(run.id) is not None


def test_processes_starting_together_migrate_once(database_url):
    start_at = time.time() + 0.5  # every process connects at the same moment, once imported
    script = ("import sys, time; from runner import database;"
              " time.sleep(max(0, float(sys.argv[2]) - time.time())); database.connect(sys.argv[1])")
    processes = [subprocess.Popen([sys.executable, "-c", script, database_url, str(start_at)], cwd=ROOT,
                                  stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errors = [process.communicate(timeout=60)[1] for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, errors

    try:
        connected = database.connect(database_url)
        assert [v.version for v in migrations.SchemaVersion.select()] == [v for v, _, _ in migrations.MIGRATIONS]
        tables = {"runs", "job_results", "step_results", "log_lines", "build_outputs"}
        assert tables <= set(connected.get_tables())
    finally:
        database.close()


def test_psycopg2_is_imported_only_for_a_postgresql_url(tmp_path):
    script = (f"import sys; from runner import database, migrations, models, queries;"
              f" database.connect('sqlite:///{tmp_path}/a.db'); print('psycopg2' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.strip() == "False", result.stderr


# --- concurrency and volume ------------------------------------------------------------------------------


def test_transaction_immediate_serialises_writers_on_sqlite(tmp_path):
    database.connect(f"sqlite:///{tmp_path / 'counter.db'}")
    run_id = new_run().id
    errors = []

    def increment(times: int) -> None:
        try:
            for _ in range(times):
                with database.transaction_immediate():
                    attempt = Run.get_by_id(run_id).attempt
                    time.sleep(0.001)  # widen the read-modify-write window a lost update would need
                    Run.update(attempt=attempt + 1).where(Run.id == run_id).execute()
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            database.close()

    threads = [threading.Thread(target=increment, args=(25,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert Run.get_by_id(run_id).attempt == 100
    finally:
        database.close()


def test_100k_log_lines_in_1000_line_batches(db, database_url):
    run = new_run()
    started = time.perf_counter()
    for first in range(1, 100_001, 1000):
        queries.insert_log_lines(log_rows(run.id, range(first, first + 1000)))
    elapsed = time.perf_counter() - started
    backend = database_url.split(":")[0]
    print(f"\n{backend}: 100,000 log lines in {elapsed:.2f} s ({100_000 / elapsed:,.0f}/s)")

    assert LogLine.select().where(LogLine.run == run.id).count() == 100_000
    expected = 1
    for line in queries.iter_log_lines(run.id):
        assert line.seq == expected
        expected += 1
    assert expected == 100_001 and queries.last_log_seq(run.id) == 100_000
