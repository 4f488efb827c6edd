"""The database every record model binds to (SQLite or PostgreSQL, chosen by URL); no tables, no queries."""

from __future__ import annotations

import sys
import threading
from contextlib import AbstractContextManager
from pathlib import Path

from runner import settings


def _import_peewee_without_psycopg():
    # peewee imports psycopg2 (~20 ms with ssl) at its own import whenever it is installed; hide the
    # drivers for that one import so a SQLite start-up never pays, _Psycopg2Adapter loads it on demand.
    # Import peewee from here (`from runner.database import peewee`) so this import comes first.
    hidden = [name for name in ("psycopg2", "psycopg") if name not in sys.modules]
    sys.modules.update(dict.fromkeys(hidden))  # a None entry makes `import name` raise ImportError
    try:
        import peewee
    finally:
        for name in hidden:
            del sys.modules[name]
    return peewee


peewee = _import_peewee_without_psycopg()

SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIX = "postgresql://"

db = peewee.DatabaseProxy()

_lock = threading.Lock()
_url: str | None = None  # the URL `db` is initialised and migrated for


class _Psycopg2Adapter(peewee.Psycopg2Adapter):
    """peewee's psycopg2 adapter, importing the driver when a PostgreSQL database is created."""

    def __init__(self) -> None:
        super().__init__()
        try:
            import psycopg2
            import psycopg2.extensions
            import psycopg2.extras
        except ImportError as error:
            message = "a postgresql:// database needs psycopg2: pip install 'forgeyard[postgres]'"
            raise peewee.ImproperlyConfigured(message) from error

        self._driver = psycopg2
        self.json_type = self.jsonb_type = psycopg2.extras.Json
        self.txn_idle = psycopg2.extensions.TRANSACTION_STATUS_IDLE
        self.txn_inerror = psycopg2.extensions.TRANSACTION_STATUS_INERROR
        self.txn_unknown = psycopg2.extensions.TRANSACTION_STATUS_UNKNOWN

    def check_driver(self) -> None:
        pass  # __init__ imported it

    def get_binary_type(self):
        return self._driver.Binary

    def connect(self, database, **params):
        return self._driver.connect(dsn=database.database, **params)


class _PostgresqlDatabase(peewee.PostgresqlDatabase):
    psycopg2_adapter = _Psycopg2Adapter


def _open(url: str) -> peewee.Database:
    if url.startswith(SQLITE_PREFIX):
        path = Path(url.removeprefix(SQLITE_PREFIX))
        settings.ensure_dir(path.parent)
        # busy_timeout first: setting WAL on a fresh file may itself wait for another process.
        pragmas = [("busy_timeout", 10000), ("journal_mode", "wal"), ("foreign_keys", 1),
                   ("synchronous", "normal")]
        return peewee.SqliteDatabase(str(path), timeout=10, pragmas=pragmas)
    if url.startswith(POSTGRES_PREFIX):
        # A database that does not answer must not hold a git hook or a worker start for long. A session frozen
        # inside a transaction (a stopped VM, a SIGSTOPped worker) would hold its row locks and block the worker
        # that took its run back: PostgreSQL ends such a transaction once the run's lease has passed.
        idle_ms = max(1000, int(settings.lease_seconds() * 1000))
        return _PostgresqlDatabase(url, connect_timeout=5, options=f"-c idle_in_transaction_session_timeout={idle_ms}")
    # The URL may hold a password: never echo it.
    raise ValueError("FORGEYARD_DATABASE_URL must start with sqlite:/// or postgresql://")


def connect(url: str | None = None) -> peewee.Database:
    """Bind `db` to the database at `url` (default: settings), migrated to the latest schema."""
    from runner import migrations  # imports the models, which import this module

    global _url
    url = url or settings.database_url()
    with _lock:  # a second thread must not see `db` before the migrations are done
        if url == _url:
            return db.obj
        database = _open(url)
        close()
        _url = None
        db.initialize(database)
        migrations.migrate(database)
        _url = url
        return database


def close() -> None:
    """Close the calling thread's connection (peewee keeps one per thread); the next query reopens it."""
    if db.obj is not None and not db.obj.is_closed():
        db.obj.close()


def transaction_immediate() -> AbstractContextManager:
    """A write transaction that takes its lock at BEGIN, so concurrent claims queue instead of failing.

    SQLite: BEGIN IMMEDIATE (a deferred transaction that later writes fails with "database is locked"
    rather than waiting). PostgreSQL: a plain transaction; lock the rows you claim with FOR UPDATE.
    """
    if isinstance(db.obj, peewee.SqliteDatabase):
        return db.atomic("IMMEDIATE")
    return db.atomic()
