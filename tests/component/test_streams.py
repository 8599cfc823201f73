"""The async path against a real redis-server: publish while the broker is away, count
what a trim loses, acknowledge only after the durable write, claim what a dead consumer
left pending, and store each entry once."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pytest
import redis

from services.telemetry.ingest import Ingest
from services.telemetry.sqlite_store import SqliteStore
from servoscope import streams
from servoscope.streams import Entry, StreamConsumer, StreamOptions, StreamPublisher
from stack.ephemeral import free_ports, wait_for
from tests.component.gatewayrig import Redis, _spawn_redis, start_redis

pytestmark = pytest.mark.component
FAST = StreamOptions(flush_period_s=0.05, block_s=0.2, claim_idle_s=1.0, timeout_s=0.3)


@pytest.fixture
def broker() -> Iterator[Redis]:
    server = start_redis()
    yield server
    server.process.terminate()
    server.process.wait(10)


def url(port: int) -> str:
    return f"redis://127.0.0.1:{port}/0"


def client(port: int) -> redis.Redis:
    return streams.connect(url(port), 2.0)


def metric(family, stream: str) -> float:
    """The value of ``family``'s child for ``stream``, read through its public collect()."""
    family.labels(stream)  # a child not yet used reads as 0
    (collected,) = family.collect()
    return next(
        s.value
        for s in collected.samples
        if stream in s.labels.values() and not s.name.endswith("_created")
    )


def sample(seq: int, channel: int = 0) -> dict:
    return {
        "producer": "test",
        "seq": seq,
        "channel": channel,
        "angle": 1.0,
        "target_angle": 1.0,
        "ts": time.time(),
    }


def publish_samples(port: int, seqs: Iterable[int]) -> None:
    publisher = StreamPublisher(url(port), streams.SAMPLES, FAST)
    for seq in seqs:
        publisher.publish(sample(seq), traced=False)
    assert publisher.flush_once()


def store_fails(stream: str, entries: Sequence[Entry]) -> None:
    """A consumer's handler whose store is gone: it reads, cannot write, acks nothing."""
    raise RuntimeError("the disk is gone")


def test_the_publisher_buffers_while_redis_is_away_and_flushes_in_order_when_it_returns() -> None:
    (port,) = free_ports(1)
    stream = "test:buffered"
    options = StreamOptions(**{**FAST.__dict__, "buffer_max": 50})
    publisher = StreamPublisher(url(port), stream, options)
    publisher.start()
    dropped_before = metric(streams.PUBLISH_DROPPED, stream)
    started = time.monotonic()
    for seq in range(60):
        publisher.publish(sample(seq), traced=False)
    assert time.monotonic() - started < 0.5, "publish waited on the absent broker"
    wait_for(lambda: metric(streams.PUBLISH_FAILURES, stream) > 0, 5, message="a failed flush")
    assert metric(streams.PUBLISH_DROPPED, stream) - dropped_before == 10  # the oldest ten
    assert metric(streams.BUFFERED, stream) == 50 == metric(streams.BUFFER_MAX, stream)
    server = _spawn_redis(port)
    try:
        wait_for(lambda: publisher.pending() == 0, 15, message="the buffer flushed")
        stored = client(port).xrange(stream)
        assert [streams._entries(stream, stored)[i].data["seq"] for i in range(50)] == list(
            range(10, 60)
        )
    finally:
        publisher.stop()
        server.terminate()
        server.wait(10)


def test_entries_trimmed_before_the_group_acknowledged_them_are_counted(broker: Redis) -> None:
    stream = "test:trimmed"
    options = StreamOptions(**{**FAST.__dict__, "maxlen": 10})
    redis_client = client(broker.port)
    redis_client.xgroup_create(stream, streams.GROUP, id="0", mkstream=True)
    publisher = StreamPublisher(url(broker.port), stream, options)
    for seq in range(25):
        publisher.publish(sample(seq), traced=False)
    assert publisher.flush_once()
    assert redis_client.xlen(stream) == 10
    assert streams.backlog(redis_client, stream).trimmed_unconsumed == 15
    # Read and acknowledge everything there: trimming acknowledged entries loses nothing.
    read = redis_client.xreadgroup(streams.GROUP, "c", {stream: ">"}, count=100)
    redis_client.xack(stream, streams.GROUP, *[i for i, _ in read[0][1]])
    for seq in range(25, 30):
        publisher.publish(sample(seq), traced=False)
    assert publisher.flush_once()
    backlog = streams.backlog(redis_client, stream)
    assert backlog.trimmed_unconsumed == 15 and backlog.lag == 5
    # Delivered but never acknowledged (a consumer died) and then trimmed: lost, counted.
    redis_client.xreadgroup(streams.GROUP, "dead", {stream: ">"}, count=100)
    for seq in range(30, 38):  # trims five acknowledged entries, then three pending
        publisher.publish(sample(seq), traced=False)
    assert publisher.flush_once()
    assert streams.backlog(redis_client, stream).trimmed_unconsumed == 18


def test_a_consumer_acknowledges_only_after_the_write_and_a_dead_ones_entries_are_claimed(
    broker: Redis, tmp_path: Path
) -> None:
    store = SqliteStore(tmp_path / "t.sqlite3")
    redis_client = client(broker.port)
    publish_samples(broker.port, range(300))

    # A consumer whose store fails: it reads, cannot write, acknowledges nothing.
    broken = StreamConsumer(url(broker.port), [streams.SAMPLES], FAST, store_fails, _metrics(), "a")
    broken.ensure_group()
    with pytest.raises(RuntimeError):
        broken.consume_once()
    assert streams.backlog(redis_client, streams.SAMPLES).pending == 300
    assert store.stats()["samples"] == 0

    # A live logger claims them once they were idle claim_idle_s, stores and acks them.
    redelivered = metric(_ingest_metrics().redelivered, streams.SAMPLES)
    ingest = Ingest(store, url(broker.port), FAST)
    ingest.consumer.name = "b"
    ingest.consumer.ensure_group()
    time.sleep(FAST.claim_idle_s + 0.1)
    assert ingest.consumer.consume_once() == 300
    assert metric(_ingest_metrics().redelivered, streams.SAMPLES) - redelivered == 300
    backlog = streams.backlog(redis_client, streams.SAMPLES)
    assert (backlog.pending, backlog.lag, backlog.oldest_age_s) == (0, 0, 0.0)
    rows = store.query(limit=1000)
    assert [row["seq"] for row in rows] == list(range(300))

    # Redelivered once more (at-least-once): the store keeps one row per entry.
    again = [streams._entries(streams.SAMPLES, redis_client.xrange(streams.SAMPLES))]
    ingest.handle(streams.SAMPLES, again[0])
    assert store.stats()["samples"] == 300


def test_departed_consumers_leave_the_group_once_nothing_is_pending_on_them(
    broker: Redis,
) -> None:
    """Each logger process is a consumer of its own name: restarts must not pile up."""
    redis_client = client(broker.port)
    publish_samples(broker.port, range(10))

    def consumer(name: str, handler=lambda stream, entries: None) -> StreamConsumer:
        made = StreamConsumer(url(broker.port), [streams.SAMPLES], FAST, handler, _metrics(), name)
        made.ensure_group()
        return made

    holding = consumer("died-holding-entries", store_fails)
    with pytest.raises(RuntimeError):
        holding.consume_once()
    done = consumer("exited-clean")
    publish_samples(broker.port, [10])
    assert done.consume_once() == 1

    def names() -> set[str]:
        return {c["name"] for c in redis_client.xinfo_consumers(streams.SAMPLES, streams.GROUP)}

    live = consumer("live")
    assert live.forget_departed(streams.SAMPLES) == []  # neither has been silent long enough
    time.sleep(FAST.claim_idle_s * streams.DEPARTED_AFTER_CLAIMS + 0.2)
    # The one holding entries stays until they are claimed; the clean one goes.
    assert live.forget_departed(streams.SAMPLES) == ["exited-clean"]
    assert live.consume_once() == 10  # claims the dead one's entries, then forgets it
    assert names() == {"live"}


def test_without_a_group_entries_published_while_no_consumer_ran_are_never_read(
    broker: Redis, tmp_path: Path
) -> None:
    """The chaos control: a tail reader (``delivery = "latest"``) misses the outage."""
    store = SqliteStore(tmp_path / "t.sqlite3")
    publisher = StreamPublisher(url(broker.port), streams.SAMPLES, FAST)
    for seq in range(20):
        publisher.publish(sample(seq), traced=False)
    assert publisher.flush_once()
    latest = StreamOptions(**{**FAST.__dict__, "delivery": "latest"})
    ingest = Ingest(store, url(broker.port), latest)
    assert ingest.consumer.read_latest_once() == 0  # starts at the tail
    for seq in range(20, 25):
        publisher.publish(sample(seq), traced=False)
    assert publisher.flush_once()
    assert ingest.consumer.read_latest_once() == 5
    assert [row["seq"] for row in store.query()] == list(range(20, 25))


def test_an_invalid_entry_is_counted_and_does_not_hold_up_the_stream(
    broker: Redis, tmp_path: Path
) -> None:
    store = SqliteStore(tmp_path / "t.sqlite3")
    publisher = StreamPublisher(url(broker.port), streams.MOVE_EVENTS, FAST)
    good = {"producer": "t", "seq": 1, "kind": "accepted", "subject": "m", "ts": time.time()}
    publisher.publish({**good, "kind": "exploded"}, traced=False)
    publisher.publish(good, traced=False)
    assert publisher.flush_once()
    rejected = streams_metric_rejected()
    ingest = Ingest(store, url(broker.port), FAST)
    ingest.consumer.ensure_group()
    assert ingest.consumer.consume_once() == 2
    assert streams_metric_rejected() - rejected == 1
    assert [e["kind"] for e in store.query_events()] == ["accepted"]
    assert streams.backlog(client(broker.port), streams.MOVE_EVENTS).pending == 0


def _ingest_metrics() -> streams.ConsumerMetrics:
    from services.telemetry.metrics import STREAM

    return STREAM


def _metrics() -> streams.ConsumerMetrics:
    return _ingest_metrics()


def streams_metric_rejected() -> float:
    from services.telemetry.metrics import ENTRIES_REJECTED

    return metric(ENTRIES_REJECTED, streams.MOVE_EVENTS)
