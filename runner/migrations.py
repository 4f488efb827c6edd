"""The versioned schema migrations and the table recording which ran; no record reads or writes."""

from __future__ import annotations

from collections.abc import Callable

from runner.catalog import CATALOG_MODELS
from runner.database import db, peewee, transaction_immediate
from runner.models import ALL_MODELS, SCALE_OUT_MODELS
from runner.timestamps import utcnow
from runner.tokens import ApiToken

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


def _create_catalog_tables(database: peewee.Database) -> None:
    database.create_tables(CATALOG_MODELS)


def _create_token_table(database: peewee.Database) -> None:
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
