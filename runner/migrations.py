"""The versioned schema migrations and the table recording which ran; records are read only to derive run_counts."""

from __future__ import annotations

from collections.abc import Callable

from runner.database import db, peewee, transaction_immediate
from runner.models import ALL_MODELS, SCALE_OUT_MODELS, RunCount
from runner.timestamps import utcnow

# Any constant works as long as every Forgeyard process uses the same one ("FYMG").
_ADVISORY_LOCK_KEY = 0x46594D47


class SchemaVersion(peewee.Model):
    version = peewee.IntegerField(primary_key=True)
    name = peewee.TextField()
    applied_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        database = db
        table_name = "schema_versions"


def _create_tables(database: peewee.Database) -> None:
    database.create_tables(ALL_MODELS)


# The catalog and token models are imported by their migrations only: an up-to-date start-up needs neither.
def _create_catalog_tables(database: peewee.Database) -> None:
    from runner.catalog import CATALOG_MODELS

    database.create_tables(CATALOG_MODELS)


def _create_token_table(database: peewee.Database) -> None:
    from runner.tokens import ApiToken

    database.create_tables([ApiToken])


def _add_column(database: peewee.Database, table: str, column: str, field: peewee.Field) -> None:
    """Add a column unless the table has it (version 1 builds tables from the current models)."""
    if column not in {c.name for c in database.get_columns(table)}:
        from playhouse.migrate import SchemaMigrator
        from playhouse.migrate import migrate as run_operations

        run_operations(SchemaMigrator.from_database(database).add_column(table, column, field))


def _add_runs_queued_at(database: peewee.Database) -> None:
    _add_column(database, "runs", "queued_at", peewee.DateTimeField(null=True))


def _create_scale_out_tables(database: peewee.Database) -> None:
    database.create_tables(SCALE_OUT_MODELS)


def _add_runs_event(database: peewee.Database) -> None:
    _add_column(database, "runs", "event_json", peewee.TextField(null=True))


def _add_deleted_at(database: peewee.Database) -> None:
    for table in ("repositories", "registries"):
        _add_column(database, table, "deleted_at", peewee.DateTimeField(null=True))




# Migration 8: run_counts (models.RunCount), kept by triggers. A run counts under the key of its creation day,
# status, output type and steps; an update changing the key moves it, and its build outputs, to the new key's row.
# A later migration that rebuilds runs or build_outputs on SQLite (playhouse does for some column changes) drops
# their triggers with the table: it must create them again.
_SQLITE_UPSERT = """INSERT INTO run_counts (day, status, output_type, steps_to_execute_json, runs, outputs)
    VALUES (date({row}.created_at), {row}.status, COALESCE({row}.output_type, ''),
            COALESCE({row}.steps_to_execute_json, ''), {sign}1,
            {sign}(SELECT COUNT(*) FROM build_outputs WHERE run_id = {row}.id))
    ON CONFLICT (day, status, output_type, steps_to_execute_json)
    DO UPDATE SET runs = runs + excluded.runs, outputs = outputs + excluded.outputs;"""
_SQLITE_OUTPUT_UPDATE = """UPDATE run_counts SET outputs = outputs {sign} 1
    WHERE (day, status, output_type, steps_to_execute_json) =
          (SELECT date(created_at), status, COALESCE(output_type, ''), COALESCE(steps_to_execute_json, '')
           FROM runs WHERE id = {row}.run_id);"""
_SQLITE_RUN_COUNTS = (
    f"CREATE TRIGGER run_counts_insert AFTER INSERT ON runs BEGIN {_SQLITE_UPSERT.format(row='NEW', sign='')} END",
    f"""CREATE TRIGGER run_counts_update AFTER UPDATE OF created_at, status, output_type, steps_to_execute_json
    ON runs WHEN date(OLD.created_at) IS NOT date(NEW.created_at) OR OLD.status IS NOT NEW.status
        OR OLD.output_type IS NOT NEW.output_type OR OLD.steps_to_execute_json IS NOT NEW.steps_to_execute_json
    BEGIN {_SQLITE_UPSERT.format(row='OLD', sign='-')} {_SQLITE_UPSERT.format(row='NEW', sign='')} END""",
    # Before the delete, while the run's outputs are there; their cascaded deletes then find no run to update.
    f"CREATE TRIGGER run_counts_delete BEFORE DELETE ON runs BEGIN {_SQLITE_UPSERT.format(row='OLD', sign='-')} END",
    f"""CREATE TRIGGER run_counts_output_insert AFTER INSERT ON build_outputs
    BEGIN {_SQLITE_OUTPUT_UPDATE.format(row='NEW', sign='+')} END""",
    f"""CREATE TRIGGER run_counts_output_delete AFTER DELETE ON build_outputs
    BEGIN {_SQLITE_OUTPUT_UPDATE.format(row='OLD', sign='-')} END""",
)
_POSTGRES_RUN_COUNTS = (
    """CREATE FUNCTION run_counts_add(run runs, sign integer) RETURNS void LANGUAGE sql AS $$
    INSERT INTO run_counts (day, status, output_type, steps_to_execute_json, runs, outputs)
    VALUES (run.created_at::date, run.status, COALESCE(run.output_type, ''), COALESCE(run.steps_to_execute_json, ''),
            sign, sign * (SELECT COUNT(*) FROM build_outputs WHERE run_id = run.id))
    ON CONFLICT (day, status, output_type, steps_to_execute_json)
    DO UPDATE SET runs = run_counts.runs + EXCLUDED.runs, outputs = run_counts.outputs + EXCLUDED.outputs $$""",
    """CREATE FUNCTION run_counts_of_runs() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            PERFORM run_counts_add(NEW, 1);
        ELSIF TG_OP = 'DELETE' THEN
            PERFORM run_counts_add(OLD, -1);
            RETURN OLD;
        -- The two rows in key order: transactions moving runs at the same time lock them alike, never in a cycle.
        ELSIF ROW(OLD.created_at::date, OLD.status, COALESCE(OLD.output_type, ''),
                  COALESCE(OLD.steps_to_execute_json, ''))
              < ROW(NEW.created_at::date, NEW.status, COALESCE(NEW.output_type, ''),
                    COALESCE(NEW.steps_to_execute_json, '')) THEN
            PERFORM run_counts_add(OLD, -1);
            PERFORM run_counts_add(NEW, 1);
        ELSE
            PERFORM run_counts_add(NEW, 1);
            PERFORM run_counts_add(OLD, -1);
        END IF;
        RETURN NEW;
    END $$""",
    """CREATE FUNCTION run_counts_of_outputs() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE run_counts SET outputs = outputs + CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END
        FROM runs
        WHERE runs.id = CASE TG_OP WHEN 'INSERT' THEN NEW.run_id ELSE OLD.run_id END
          AND (day, run_counts.status, run_counts.output_type, run_counts.steps_to_execute_json)
            = (runs.created_at::date, runs.status, COALESCE(runs.output_type, ''),
               COALESCE(runs.steps_to_execute_json, ''));
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER run_counts_insert AFTER INSERT ON runs FOR EACH ROW EXECUTE FUNCTION run_counts_of_runs()",
    """CREATE TRIGGER run_counts_update AFTER UPDATE OF created_at, status, output_type, steps_to_execute_json
    ON runs FOR EACH ROW WHEN (OLD.created_at::date IS DISTINCT FROM NEW.created_at::date
        OR OLD.status IS DISTINCT FROM NEW.status OR OLD.output_type IS DISTINCT FROM NEW.output_type
        OR OLD.steps_to_execute_json IS DISTINCT FROM NEW.steps_to_execute_json)
    EXECUTE FUNCTION run_counts_of_runs()""",
    "CREATE TRIGGER run_counts_delete BEFORE DELETE ON runs FOR EACH ROW EXECUTE FUNCTION run_counts_of_runs()",
    """CREATE TRIGGER run_counts_outputs AFTER INSERT OR DELETE ON build_outputs FOR EACH ROW
    EXECUTE FUNCTION run_counts_of_outputs()""",
)


def _create_run_counts(database: peewee.Database) -> None:
    postgres = isinstance(database, peewee.PostgresqlDatabase)
    database.create_tables([RunCount])
    for statement in _POSTGRES_RUN_COUNTS if postgres else _SQLITE_RUN_COUNTS:
        database.execute_sql(statement)
    day = "r.created_at::date" if postgres else "date(r.created_at)"
    key = f"{day}, r.status, COALESCE(r.output_type, ''), COALESCE(r.steps_to_execute_json, '')"
    # The runs already there, in this transaction: creating the triggers locked runs against writers until it ends.
    database.execute_sql(
        f"""INSERT INTO run_counts (day, status, output_type, steps_to_execute_json, runs, outputs)
        SELECT {key}, COUNT(*), COALESCE(SUM(o.made), 0) FROM runs r
        LEFT JOIN (SELECT run_id, COUNT(*) AS made FROM build_outputs GROUP BY run_id) o ON o.run_id = r.id
        GROUP BY {key}""")

# Migration 9, PostgreSQL: log_lines' run is checked once per statement, not once per line. A foreign key runs a
# lookup and a row lock on runs for every line inserted: two thirds of the server's work for a step that prints a
# million lines (bench row 6). A statement trigger over the lines inserted (a transition table) locks and checks
# each of their runs once, as the key did; a trigger on runs deletes a deleted run's lines, as ON DELETE CASCADE did.
# (psycopg2 reads % as a parameter mark: %% is a percent sign in these statements.)
_POSTGRES_LOG_LINES_RUN_CHECK = (
    """DO $$ DECLARE name text; BEGIN
        FOR name IN SELECT conname FROM pg_constraint WHERE conrelid = 'log_lines'::regclass AND contype = 'f' LOOP
            EXECUTE format('ALTER TABLE log_lines DROP CONSTRAINT %%I', name);
        END LOOP;
    END $$""",
    """CREATE FUNCTION log_lines_check_runs() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE missing integer;
    BEGIN
        -- FOR KEY SHARE, as the foreign key: the runs cannot be deleted until this transaction ends.
        PERFORM 1 FROM runs WHERE id IN (SELECT DISTINCT run_id FROM new_lines) FOR KEY SHARE;
        SELECT n.run_id INTO missing FROM (SELECT DISTINCT run_id FROM new_lines) n
        WHERE NOT EXISTS (SELECT 1 FROM runs WHERE runs.id = n.run_id) LIMIT 1;
        IF FOUND THEN
            RAISE foreign_key_violation USING MESSAGE = format('log lines of run %%s, which does not exist', missing);
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER log_lines_check_runs_insert AFTER INSERT ON log_lines REFERENCING NEW TABLE AS new_lines
    FOR EACH STATEMENT EXECUTE FUNCTION log_lines_check_runs()""",
    """CREATE TRIGGER log_lines_check_runs_update AFTER UPDATE ON log_lines REFERENCING NEW TABLE AS new_lines
    FOR EACH STATEMENT EXECUTE FUNCTION log_lines_check_runs()""",
    """CREATE FUNCTION runs_delete_log_lines() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM log_lines WHERE run_id = OLD.id;
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER runs_delete_log_lines AFTER DELETE ON runs FOR EACH ROW EXECUTE FUNCTION runs_delete_log_lines()",
)


def _check_log_lines_per_statement(database: peewee.Database) -> None:
    if isinstance(database, peewee.PostgresqlDatabase):  # SQLite's per-line check is an index lookup, and cheap
        for statement in _POSTGRES_LOG_LINES_RUN_CHECK:
            database.execute_sql(statement)


# Append-only; a released migration never changes. To add one, append e.g.
#
#     def _add_runs_note(database):
#         from playhouse.migrate import SchemaMigrator, migrate
#         migrator = SchemaMigrator.from_database(database)
#         migrate(migrator.add_column("runs", "note", peewee.TextField(null=True)))
#
#     (2, "add runs.note", _add_runs_note),
#
# and add the field to the model. Version 1 builds tables from the current models, so a fresh database
# already has the column: guard such steps with `name not in {c.name for c in database.get_columns(t)}`.
MIGRATIONS: list[tuple[int, str, Callable[[peewee.Database], None]]] = [
    (1, "create tables", _create_tables),
    (2, "repositories, registries, branding templates and presets", _create_catalog_tables),
    (3, "api tokens", _create_token_table),
    (4, "runs.queued_at", _add_runs_queued_at),
    (5, "repositories and registries are marked deleted, not removed", _add_deleted_at),
    (6, "runs.event_json", _add_runs_event),
    (7, "schedule fires and workers", _create_scale_out_tables),
    (8, "run counts by day, status, output type and steps, kept by triggers", _create_run_counts),
    (9, "PostgreSQL: a log line's run checked once per statement, not per line", _check_log_lines_per_statement),
]


def current_version() -> int:
    """The highest migration applied to the database `db` is bound to, 0 for an empty database."""
    if not SchemaVersion.table_exists():
        return 0
    return SchemaVersion.select(peewee.fn.MAX(SchemaVersion.version)).scalar() or 0


def migrate(database: peewee.Database) -> None:
    """Apply the pending migrations in order, each in its own transaction; a no-op when up to date."""
    if db.obj is not database:
        raise ValueError("migrate() runs on the database runner.database.db is bound to")
    if current_version() >= MIGRATIONS[-1][0]:
        return  # the usual start-up: one read, no write lock
    for version, name, apply in MIGRATIONS:
        # The lock makes a second process starting at the same time wait, then find the work done.
        with transaction_immediate():
            if isinstance(database, peewee.PostgresqlDatabase):
                database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK_KEY,))
            SchemaVersion.create_table()
            if SchemaVersion.get_or_none(SchemaVersion.version == version) is None:
                apply(database)
                SchemaVersion.create(version=version, name=name)
