"""Samples in SQLite: durable before acknowledged, shared by every instance on the host.

Durability: the database runs in WAL mode with ``synchronous=FULL``, so a commit
returns only after the write-ahead log is fsynced. A batch answered 202 therefore
survives a ``kill -9`` of the logger and a power loss of the host (as far as the disk
honours fsync). Several logger processes may open the same file: SQLite serialises
their writers (``BEGIN IMMEDIATE`` with a busy timeout) and every reader sees every
committed batch.

Idempotency: a batch sent with an ``Idempotency-Key`` is recorded with the key and a
hash of its body in the same transaction as its rows, so a retried batch is stored
once and answered as the first time.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.telemetry.samples import Sample

SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel INTEGER NOT NULL,
    angle REAL NOT NULL,
    target_angle REAL NOT NULL,
    ts REAL NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_channel_ts ON samples (channel, ts);
CREATE INDEX IF NOT EXISTS samples_ts ON samples (ts);
CREATE TABLE IF NOT EXISTS batches (
    idempotency_key TEXT PRIMARY KEY,
    body_sha256 TEXT NOT NULL,
    accepted INTEGER NOT NULL,
    first_id INTEGER,
    last_id INTEGER,
    received_at REAL NOT NULL
);
"""

IDEMPOTENCY_WINDOW_S = 24 * 3600.0


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


class SampleStore:
    """One SQLite connection per thread onto a shared WAL database."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 5.0) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connection().executescript(SCHEMA)  # runs its own transaction

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def append(
        self, samples: Sequence[Sample], *, body: bytes, idempotency_key: str | None = None
    ) -> Receipt:
        """Store ``samples`` durably; a repeated ``idempotency_key`` stores nothing again."""
        digest = hashlib.sha256(body).hexdigest()
        now = time.time()
        with self._transaction() as db:
            if idempotency_key is not None:
                row = db.execute(
                    "SELECT body_sha256, accepted, first_id, last_id FROM batches "
                    "WHERE idempotency_key = ? AND received_at > ?",
                    (idempotency_key, now - IDEMPOTENCY_WINDOW_S),
                ).fetchone()
                if row is not None:
                    if row["body_sha256"] != digest:
                        raise IdempotencyConflict(idempotency_key)
                    return Receipt(row["accepted"], row["first_id"], row["last_id"], True)
            db.executemany(
                "INSERT INTO samples (channel, angle, target_angle, ts, received_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(s.channel, s.angle, s.target_angle, s.ts, now) for s in samples],
            )
            # The write lock is ours since BEGIN IMMEDIATE, so the batch's ids are contiguous.
            last_id = db.execute("SELECT last_insert_rowid()").fetchone()[0]
            receipt = Receipt(len(samples), last_id - len(samples) + 1, last_id)
            if idempotency_key is not None:
                db.execute(
                    "INSERT OR REPLACE INTO batches VALUES (?, ?, ?, ?, ?, ?)",
                    (idempotency_key, digest, receipt.accepted, receipt.first_id, last_id, now),
                )
        return receipt

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
        clauses, params = ["id > ?"], [after_id]
        if channel is not None:
            clauses.append("channel = ?")
            params.append(channel)
        if since is not None:
            clauses.append("ts >= ?")
            params.append(since)
        if until is not None:
            clauses.append("ts < ?")
            params.append(until)
        rows = self._connection().execute(
            f"SELECT id, channel, angle, target_angle, ts FROM samples "
            f"WHERE {' AND '.join(clauses)} ORDER BY id LIMIT ?",
            (*params, limit),
        )
        return [dict(row) for row in rows]

    def stats(self) -> dict[str, Any]:
        db = self._connection()
        total = db.execute("SELECT count(*), min(ts), max(ts) FROM samples").fetchone()
        channels = db.execute(
            "SELECT channel, count(*) AS samples, max(ts) AS newest_ts FROM samples "
            "GROUP BY channel ORDER BY channel"
        ).fetchall()
        return {
            "samples": total[0],
            "oldest_ts": total[1],
            "newest_ts": total[2],
            "channels": [dict(row) for row in channels],
        }

    def prune(self, *, max_age_s: float, max_rows: int) -> int:
        """Apply retention: drop samples older than ``max_age_s`` and beyond ``max_rows``."""
        now = time.time()
        with self._transaction() as db:
            removed = db.execute("DELETE FROM samples WHERE ts < ?", (now - max_age_s,)).rowcount
            removed += db.execute(
                "DELETE FROM samples WHERE id <= (SELECT id FROM samples ORDER BY id DESC "
                "LIMIT 1 OFFSET ?)",
                (max_rows,),
            ).rowcount
            db.execute("DELETE FROM batches WHERE received_at < ?", (now - IDEMPOTENCY_WINDOW_S,))
        return removed
