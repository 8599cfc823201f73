"""The shared store: PostgreSQL, for several logger instances on several machines.

Every logger connects to the same server (``[telemetry_logger] postgres_dsn``); each
thread keeps one connection. A write transaction first takes a transaction-level
advisory lock, so writers are serialised as SQLite serialises them: a batch's ids are
contiguous, and ids commit in order, so a reader paging by id never steps over a row
that commits later with a smaller id. At these rates (hundreds of rows a second) one
writer at a time costs nothing; the readers never wait.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from services.telemetry.store import SCHEMA as STORE_SCHEMA
from services.telemetry.store import Cursor, TelemetryStore, rows_as_dicts

SCHEMA = STORE_SCHEMA.format(
    identity="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", real="DOUBLE PRECISION"
)
WRITE_LOCK = 0x5E2F05C0  # the advisory lock every writer takes (any constant; one per schema)


def _sql(text: str) -> str:
    return text.replace("?", "%s")  # the store's queries use ? and never a literal ?


class _PostgresCursor(Cursor):
    def __init__(self, db: psycopg.Connection) -> None:
        self.db = db

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.db.execute(_sql(sql), params)  # type: ignore[arg-type]

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        with self.db.cursor() as cursor:
            cursor.executemany(_sql(sql), rows)  # type: ignore[arg-type]
            return cursor.rowcount

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        return self.execute(sql, params).fetchone()

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cursor = self.execute(sql, params)
        return rows_as_dicts(cursor.description, iter(cursor.fetchall()))


class PostgresStore(TelemetryStore):
    backend = "postgres"
    insert_if_absent = "INSERT"
    if_absent_suffix = "ON CONFLICT DO NOTHING"  # any unique key: entry id, producer seq

    def __init__(self, dsn: str, *, connect_timeout_s: float = 5.0) -> None:
        self.dsn = dsn
        self.connect_timeout_s = connect_timeout_s
        self._local = threading.local()
        with self._connection().transaction():
            db = self._connection()
            db.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))  # one creator at a time
            db.execute(SCHEMA)  # type: ignore[arg-type]

    def _connection(self) -> psycopg.Connection:
        db = getattr(self._local, "db", None)
        if db is None or db.closed:
            db = psycopg.connect(
                self.dsn, autocommit=True, connect_timeout=max(1, int(self.connect_timeout_s))
            )
            self._local.db = db
        return db

    @contextmanager
    def _transaction(self) -> Iterator[Cursor]:
        db = self._connection()
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            yield _PostgresCursor(db)

    def _reader(self) -> Cursor:
        return _PostgresCursor(self._connection())

    def _last_sample_id(self, db: Cursor) -> int:
        row = db.one("SELECT currval(pg_get_serial_sequence('samples', 'id'))")
        assert row is not None
        return int(row[0])

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
