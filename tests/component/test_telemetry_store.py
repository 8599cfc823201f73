"""Both telemetry stores, SQLite and PostgreSQL (a real server), pass the same tests:
idempotent batches and stream entries, events, cursor pagination and retention."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.telemetry.postgres_store import PostgresStore
from services.telemetry.samples import Sample
from services.telemetry.sqlite_store import SqliteStore
from services.telemetry.store import (
    IdempotencyConflict,
    StreamEvent,
    StreamSample,
    TelemetryStore,
)
from tests.component.postgresrig import postgres_server

NOW = time.time()


@pytest.fixture(scope="module")
def postgres_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with postgres_server(tmp_path_factory.mktemp("pg")) as dsn:
        yield dsn


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TelemetryStore]:
    if request.param == "sqlite":
        opened: TelemetryStore = SqliteStore(tmp_path / "telemetry.sqlite3")
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        opened = PostgresStore(dsn)
        with opened._transaction() as db:  # every test starts from empty tables
            for table in ("samples", "events", "batches"):
                db.execute(f"DELETE FROM {table}")
    yield opened
    opened.close()


def samples(count: int, channel: int = 0, start: float = NOW) -> list[Sample]:
    return [Sample(channel, i * 0.5, 90.0, start + i * 0.01) for i in range(count)]


def entries(count: int, producer: str = "p", start_seq: int = 0) -> list[StreamSample]:
    return [
        StreamSample(f"{1000 + i}-0", sample, producer, start_seq + i)
        for i, sample in enumerate(samples(count))
    ]


def test_a_batch_gets_contiguous_ids_and_pages_back_in_order(store: TelemetryStore) -> None:
    receipt = store.append(samples(250), body=b"one")
    assert receipt.accepted == 250
    assert receipt.last_id - receipt.first_id == 249
    seen, cursor = [], 0
    while True:
        page = store.query(after_id=cursor, limit=100)
        seen += page
        if len(page) < 100:
            break
        cursor = page[-1]["id"]
    assert [row["angle"] for row in seen] == [i * 0.5 for i in range(250)]
    assert [row["id"] for row in seen] == sorted(row["id"] for row in seen)


def test_a_repeated_idempotency_key_stores_once_and_a_reused_one_is_refused(
    store: TelemetryStore,
) -> None:
    first = store.append(samples(3), body=b"batch", idempotency_key="k1")
    again = store.append(samples(3), body=b"batch", idempotency_key="k1")
    assert again.replayed and again.as_dict() == first.as_dict()
    assert store.stats()["samples"] == 3
    with pytest.raises(IdempotencyConflict):
        store.append(samples(3), body=b"other", idempotency_key="k1")


def test_stream_entries_delivered_twice_are_stored_once(store: TelemetryStore) -> None:
    assert store.append_entries(entries(10)) == 10
    # A redelivery after a consumer died before acknowledging: some old, some new.
    assert store.append_entries(entries(15)) == 5
    rows = store.query(limit=100)
    assert [row["seq"] for row in rows] == list(range(15))
    assert len({row["entry_id"] for row in rows}) == 15


def test_a_sample_published_twice_under_new_entry_ids_is_stored_once(
    store: TelemetryStore,
) -> None:
    first = entries(5)
    again = [StreamSample(f"2000-{i}", e.sample, e.producer, e.seq) for i, e in enumerate(first)]
    assert store.append_entries(first) == 5
    assert store.append_entries(again) == 0


def test_events_are_stored_once_and_filtered(store: TelemetryStore) -> None:
    events = [
        StreamEvent(
            f"{i}-0", "servoscope:move-events", kind, "m1", 2, NOW + i, {"n": i}, "ab", "p", i
        )
        for i, kind in enumerate(["accepted", "started", "done"])
    ] + [
        StreamEvent(
            "9-0", "servoscope:device-events", "connected", "/dev/x", None, NOW, {}, None, "q", 1
        )
    ]
    assert store.append_entries([], events) == 4
    assert store.append_entries([], events[:2]) == 0
    moves = store.query_events(subject="m1")
    assert [e["kind"] for e in moves] == ["accepted", "started", "done"]
    assert moves[2]["detail"] == {"n": 2} and moves[0]["trace_id"] == "ab"
    assert [e["kind"] for e in store.query_events(kind="connected")] == ["connected"]
    page = store.query_events(limit=2)
    assert [e["kind"] for e in store.query_events(after_id=page[-1]["id"])] == [
        "done",
        "connected",
    ]


def test_retention_by_age_and_by_rows(store: TelemetryStore) -> None:
    store.append(samples(5, start=NOW - 7200), body=b"old")
    store.append(samples(20), body=b"new")
    old_event = StreamEvent(
        "1-0", "servoscope:move-events", "done", "m", 1, NOW - 7200, {}, None, "p", 1
    )
    store.append_entries([], [old_event])
    removed = store.prune(max_age_s=3600, max_rows=1000)
    assert removed == 6
    assert store.stats()["samples"] == 20 and store.stats()["events"] == 0
    assert store.prune(max_age_s=3600, max_rows=8) == 12
    kept = store.query(limit=100)
    assert [row["angle"] for row in kept] == [i * 0.5 for i in range(12, 20)]  # the newest


def test_newest_sample_and_stats(store: TelemetryStore) -> None:
    assert store.newest_ts() is None
    store.append_entries(entries(4))
    assert store.newest_ts() == pytest.approx(NOW + 0.03)
    stats = store.stats()
    assert stats["backend"] in ("sqlite", "postgres") and stats["samples"] == 4
