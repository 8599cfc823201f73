"""Samples and events, durable before acknowledged, in SQLite or PostgreSQL.

Two ways in, one store:

- ``POST /samples`` batches (:meth:`TelemetryStore.append`): a batch sent with an
  ``Idempotency-Key`` is recorded with the key and a hash of its body in the same
  transaction as its rows, so a retried batch is stored once and answered as the first time;
- stream entries (:meth:`TelemetryStore.append_entries`): every row carries its stream
  entry id under a unique index and is inserted "if absent", so an entry delivered twice
  (a consumer died before acknowledging it) is stored once. That is what turns the
  broker's at-least-once delivery into exactly-once in the store.

Both backends commit before returning (SQLite: WAL with ``synchronous=FULL``; PostgreSQL:
a committed transaction) and serialise writers, so a batch's ids are contiguous and ids
become visible in order: cursor pagination by id never skips a row committed later.
The backend specifics (connections, schema, locking, dialect) live in
:mod:`services.telemetry.sqlite_store` and :mod:`services.telemetry.postgres_store`;
every query is written once, here.
"""

from __future__ import annotations

import hashlib
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from services.telemetry.samples import Sample

IDEMPOTENCY_WINDOW_S = 24 * 3600.0
# One schema for both backends: each fills in its identity column and its float type.
SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    id {identity},
    channel INTEGER NOT NULL,
    angle {real} NOT NULL,
    target_angle {real} NOT NULL,
    ts {real} NOT NULL,
    received_at {real} NOT NULL,
    entry_id TEXT,
    producer TEXT,
    seq BIGINT
);
CREATE INDEX IF NOT EXISTS samples_channel_ts ON samples (channel, ts);
CREATE INDEX IF NOT EXISTS samples_ts ON samples (ts);
CREATE UNIQUE INDEX IF NOT EXISTS samples_entry_id ON samples (entry_id);
-- A batch the publisher sent again (its answer was lost) has new entry ids, same seqs.
CREATE UNIQUE INDEX IF NOT EXISTS samples_producer_seq ON samples (producer, channel, seq);
CREATE TABLE IF NOT EXISTS events (
    id {identity},
    stream TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    channel INTEGER,
    ts {real} NOT NULL,
    detail TEXT NOT NULL,
    trace_id TEXT,
    entry_id TEXT NOT NULL UNIQUE,
    producer TEXT NOT NULL,
    seq BIGINT NOT NULL,
    received_at {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE UNIQUE INDEX IF NOT EXISTS events_producer_seq ON events (producer, seq);
CREATE TABLE IF NOT EXISTS batches (
    idempotency_key TEXT PRIMARY KEY,
    body_sha256 TEXT NOT NULL,
    accepted INTEGER NOT NULL,
    first_id BIGINT,
    last_id BIGINT,
    received_at {real} NOT NULL
);
"""
SAMPLE_COLUMNS = "id, channel, angle, target_angle, ts, entry_id, producer, seq"
EVENT_COLUMNS = "id, stream, kind, subject, channel, ts, detail, trace_id, entry_id"


class IdempotencyConflict(Exception):
    """The key was used before for a different batch."""


@dataclass(frozen=True)
class Receipt:
    accepted: int
    first_id: int | None
    last_id: int | None
    replayed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "first_id": self.first_id, "last_id": self.last_id}


@dataclass(frozen=True)
class StreamSample:
    """A sample that came through the stream: its entry id, producer and sequence.

    Either key stores it once: the entry id when the broker delivers it again, the
    producer's (channel, seq) when the producer published it again."""

    entry_id: str
    sample: Sample
    producer: str
    seq: int


@dataclass(frozen=True)
class StreamEvent:
    """A device or move event from a stream."""

    entry_id: str
    stream: str
    kind: str
    subject: str
    channel: int | None
    ts: float
    detail: dict[str, Any]
    trace_id: str | None
    producer: str
    seq: int


class Cursor(ABC):
    """The little a store needs from a DB-API cursor, with ``?`` placeholders."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    @abstractmethod
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run ``sql`` once per row; the number of rows it changed."""

    @abstractmethod
    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None: ...

    @abstractmethod
    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...


class TelemetryStore(ABC):
    """What the logger stores and serves, whatever the database."""

    backend = ""
    insert_if_absent = ""  # the dialect's "INSERT ... unless the unique key exists" prefix
    if_absent_suffix = ""

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Cursor]:
        """A write transaction that holds the store's write lock until it commits."""

    @abstractmethod
    def _reader(self) -> Cursor: ...

    @abstractmethod
    def _last_sample_id(self, db: Cursor) -> int:
        """The id the last insert of this transaction got."""

    def close(self) -> None:  # noqa: B027 - optional for backends that hold connections
        pass

    # --- writes -------------------------------------------------------------------

    def append(
        self, samples: Sequence[Sample], *, body: bytes, idempotency_key: str | None = None
    ) -> Receipt:
        """Store ``samples`` durably; a repeated ``idempotency_key`` stores nothing again."""
        digest = hashlib.sha256(body).hexdigest()
        now = time.time()
        with self._transaction() as db:
            if idempotency_key is not None:
                row = db.one(
                    "SELECT body_sha256, accepted, first_id, last_id FROM batches "
                    "WHERE idempotency_key = ? AND received_at > ?",
                    (idempotency_key, now - IDEMPOTENCY_WINDOW_S),
                )
                if row is not None:
                    if row[0] != digest:
                        raise IdempotencyConflict(idempotency_key)
                    return Receipt(row[1], row[2], row[3], True)
            db.executemany(
                "INSERT INTO samples (channel, angle, target_angle, ts, received_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(s.channel, s.angle, s.target_angle, s.ts, now) for s in samples],
            )
            # The write lock is ours for the whole transaction, so the ids are contiguous.
            last_id = self._last_sample_id(db)
            receipt = Receipt(len(samples), last_id - len(samples) + 1, last_id)
            if idempotency_key is not None:
                db.execute(
                    "DELETE FROM batches WHERE idempotency_key = ?", (idempotency_key,)
                )  # an expired record of the same key
                db.execute(
                    "INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?)",
                    (idempotency_key, digest, receipt.accepted, receipt.first_id, last_id, now),
                )
        return receipt

    def append_entries(
        self, samples: Sequence[StreamSample], events: Sequence[StreamEvent] = ()
    ) -> int:
        """Store stream entries once each, in one transaction: rows whose entry id is
        already stored are skipped. Returns how many rows were new."""
        now = time.time()
        added = 0
        with self._transaction() as db:
            if samples:
                added += db.executemany(
                    f"{self.insert_if_absent} INTO samples "
                    "(channel, angle, target_angle, ts, received_at, entry_id, producer, seq) "
                    f"VALUES (?, ?, ?, ?, ?, ?, ?, ?) {self.if_absent_suffix}",
                    [
                        (
                            s.sample.channel,
                            s.sample.angle,
                            s.sample.target_angle,
                            s.sample.ts,
                            now,
                            s.entry_id,
                            s.producer,
                            s.seq,
                        )
                        for s in samples
                    ],
                )
            if events:
                added += db.executemany(
                    f"{self.insert_if_absent} INTO events (stream, kind, subject, channel, ts, "
                    "detail, trace_id, entry_id, producer, seq, received_at) "
                    f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) {self.if_absent_suffix}",
                    [
                        (
                            e.stream,
                            e.kind,
                            e.subject,
                            e.channel,
                            e.ts,
                            json.dumps(e.detail),
                            e.trace_id,
                            e.entry_id,
                            e.producer,
                            e.seq,
                            now,
                        )
                        for e in events
                    ],
                )
        return added

    def prune(self, *, max_age_s: float, max_rows: int) -> int:
        """Retention: drop samples and events older than ``max_age_s`` and beyond ``max_rows``."""
        now = time.time()
        removed = 0
        with self._transaction() as db:
            for table in ("samples", "events"):
                removed += db.execute(
                    f"DELETE FROM {table} WHERE ts < ?", (now - max_age_s,)
                ).rowcount
                cutoff = db.one(
                    f"SELECT id FROM {table} ORDER BY id DESC LIMIT 1 OFFSET ?", (max_rows,)
                )
                if cutoff is not None:
                    removed += db.execute(
                        f"DELETE FROM {table} WHERE id <= ?", (cutoff[0],)
                    ).rowcount
            db.execute("DELETE FROM batches WHERE received_at < ?", (now - IDEMPOTENCY_WINDOW_S,))
        return removed

    # --- reads --------------------------------------------------------------------

    def _page(self, table: str, columns: str, after_id: int, limit: int, **filters: Any):
        where, params = _filters(after_id, **filters)
        return self._reader().rows(
            f"SELECT {columns} FROM {table} WHERE {where} ORDER BY id LIMIT ?", (*params, limit)
        )

    def query(
        self,
        *,
        channel: int | None = None,
        since: float | None = None,
        until: float | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Samples in id order after ``after_id`` (the pagination cursor)."""
        return self._page(
            "samples", SAMPLE_COLUMNS, after_id, limit, channel=channel, since=since, until=until
        )

    def query_events(
        self, *, kind: str | None = None, subject: str | None = None, **page: Any
    ) -> list[dict[str, Any]]:
        """Events in id order after ``after_id``; ``page`` as for :meth:`query`."""
        after_id, limit = page.pop("after_id", 0), page.pop("limit", 100)
        rows = self._page(
            "events", EVENT_COLUMNS, after_id, limit, kind=kind, subject=subject, **page
        )
        for row in rows:
            row["detail"] = json.loads(row["detail"])
        return rows

    def stats(self) -> dict[str, Any]:
        db = self._reader()
        total = db.one("SELECT count(*), min(ts), max(ts) FROM samples")
        assert total is not None
        channels = db.rows(
            "SELECT channel, count(*) AS samples, max(ts) AS newest_ts FROM samples "
            "GROUP BY channel ORDER BY channel"
        )
        events = db.one("SELECT count(*) FROM events")
        return {
            "backend": self.backend,
            "samples": total[0],
            "oldest_ts": total[1],
            "newest_ts": total[2],
            "events": events[0] if events else 0,
            "channels": channels,
        }

    def newest_ts(self) -> float | None:
        """The newest stored sample's timestamp (ingest freshness)."""
        row = self._reader().one("SELECT max(ts) FROM samples")
        return row[0] if row else None


def _filters(after_id: int, **equal_or_range: Any) -> tuple[str, list[Any]]:
    clauses, params = ["id > ?"], [after_id]
    for name, value in equal_or_range.items():
        if value is None:
            continue
        if name == "since":
            clauses.append("ts >= ?")
        elif name == "until":
            clauses.append("ts < ?")
        else:
            clauses.append(f"{name} = ?")
        params.append(value)
    return " AND ".join(clauses), params


def rows_as_dicts(description: Any, rows: Iterator[Sequence[Any]]) -> list[dict[str, Any]]:
    names = [column[0] for column in description or []]
    return [dict(zip(names, row, strict=True)) for row in rows]
