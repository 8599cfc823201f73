"""The embedded store: one SQLite file in WAL mode, shared by every logger on the host.

Durability: ``synchronous=FULL``, so a commit returns only after the write-ahead log is
fsynced; a stored batch survives a ``kill -9`` of the logger and a power loss of the
host (as far as the disk honours fsync). Several logger processes may open the same
file: writers are serialised by ``BEGIN IMMEDIATE`` with a busy timeout, and every
reader sees every committed row.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from services.telemetry.store import SCHEMA as STORE_SCHEMA
from services.telemetry.store import Cursor, TelemetryStore, rows_as_dicts

SCHEMA = STORE_SCHEMA.format(identity="INTEGER PRIMARY KEY AUTOINCREMENT", real="REAL")
# Columns added since the first release: a database file from before gains them.
ADDED_SAMPLE_COLUMNS = {"entry_id": "TEXT", "producer": "TEXT", "seq": "INTEGER"}


class _SqliteCursor(Cursor):
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.db.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        return self.db.executemany(sql, rows).rowcount

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row = self.db.execute(sql, params).fetchone()
        return tuple(row) if row is not None else None

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cursor = self.db.execute(sql, params)
        return rows_as_dicts(cursor.description, iter(cursor.fetchall()))


class SqliteStore(TelemetryStore):
    """One SQLite connection per thread onto a shared WAL database."""

    backend = "sqlite"
    insert_if_absent = "INSERT OR IGNORE"

    def __init__(self, path: Path, *, busy_timeout_s: float = 5.0) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        db = self._connection()
        existing = {row[1] for row in db.execute("PRAGMA table_info(samples)")}
        if existing:
            for column, kind in ADDED_SAMPLE_COLUMNS.items():
                if column not in existing:
                    db.execute(f"ALTER TABLE samples ADD COLUMN {column} {kind}")
        db.executescript(SCHEMA)  # runs its own transaction

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
        return db

    @contextmanager
    def _transaction(self) -> Iterator[Cursor]:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")  # the write lock, until COMMIT
        try:
            yield _SqliteCursor(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _reader(self) -> Cursor:
        return _SqliteCursor(self._connection())

    def _last_sample_id(self, db: Cursor) -> int:
        row = db.one("SELECT last_insert_rowid()")
        assert row is not None
        return int(row[0])
