"""A breaker shared through a real redis-server, counted on the view a request read with
its rate limit (gateway/sharedtrip.py): a success costs no round trip (one pipeline when
it ends a run of failures); a failure reads the count other workers added, so the
breaker opens on time for all.

Each "worker" is a Breaker of its own on the same Redis key, as in two processes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis as redis_py

from gateway.metrics import BREAKER
from gateway.policy import RateLimitOptions
from gateway.sharedtrip import SharedTrip
from servoscope.resilience.breaker import CLOSED, OPEN, Breaker, BreakerOpen, BreakerOptions
from servoscope.resilience.sharedstate import SharedState
from stack.ephemeral import terminate
from tests.component.gatewayrig import Redis, start_redis

pytestmark = pytest.mark.component
NOT_LIMITED = RateLimitOptions(enabled=False)


@pytest.fixture(scope="module")
def redis() -> Iterator[Redis]:
    started = start_redis()
    yield started
    terminate(started.process)


@pytest.fixture
def client(redis: Redis) -> Iterator[redis_py.Redis]:
    client = redis_py.Redis(port=redis.port)
    client.flushall()
    yield client
    client.close()


def worker(redis: Redis, instance: str = "i:1") -> tuple[Breaker, SharedTrip]:
    shared = SharedState.connect(f"redis://127.0.0.1:{redis.port}/0")
    options = BreakerOptions(failures=3, reset_s=30)
    return Breaker("up", instance, options, shared, BREAKER, key_prefix="t"), SharedTrip(shared)


def reads(client: redis_py.Redis) -> int:
    """Reads Redis has served so far, one per round trip (this one included)."""
    return int(client.info("stats")["total_reads_processed"])


def test_a_success_on_a_clean_view_costs_no_round_trip(
    redis: Redis, client: redis_py.Redis
) -> None:
    a, trip = worker(redis)
    view = trip.take(NOT_LIMITED, "r", "k", [a.storage.key]).views[a.storage.key]
    assert view["state"] is None and view["fail"] is None  # never seen: closed, no failure
    before = reads(client)
    assert a.admit(view) == CLOSED
    a.record_outcome(200, view)
    assert reads(client) - before == 1  # only the INFO that counts it
    assert a.state == CLOSED and client.hget(a.storage.key, "fail") is None


def test_a_success_after_failures_resets_them_in_one_pipeline(
    redis: Redis, client: redis_py.Redis
) -> None:
    a, trip = worker(redis)
    client.hset(a.storage.key, mapping={"state": CLOSED, "fail": 2})
    view = trip.take(NOT_LIMITED, "r", "k", [a.storage.key]).views[a.storage.key]
    assert view["state"] == CLOSED and view["fail"] == "2"
    before = reads(client)
    assert a.admit(view) == CLOSED
    a.record_outcome(200, view)
    assert reads(client) - before == 2  # the pipeline, and the INFO that counts it
    assert client.hget(a.storage.key, "fail") == b"0"  # pybreaker's reset landed


def test_the_script_counts_an_admitted_request_in_the_budget_once(
    redis: Redis, client: redis_py.Redis
) -> None:
    _, trip = worker(redis)
    options = RateLimitOptions(requests=1, per_s=60)
    counted = [trip.take(options, "r", "k", [], ("t:budget:req:1", 5)).counted for _ in range(2)]
    assert counted == [True, False]  # the second was refused by the rate limit: not counted
    assert client.get("t:budget:req:1") == b"1"
    assert 0 < client.ttl("t:budget:req:1") <= 5


def test_a_failure_counts_what_other_workers_added_since_the_view(
    redis: Redis, client: redis_py.Redis
) -> None:
    a, trip_a = worker(redis)
    b, _ = worker(redis)
    view = trip_a.take(NOT_LIMITED, "r", "k", [a.storage.key]).views[a.storage.key]
    assert a.admit(view) == CLOSED  # the view says closed, no failure yet
    for _ in range(2):  # meanwhile the other worker sees two failures
        b.record_outcome(503)
    a.record_outcome(503, view)  # the third: stale view, live count
    assert client.hget(a.storage.key, "state") == b"open"
    assert a.state == OPEN and b.state == OPEN


def test_an_open_breaker_in_the_view_is_read_afresh(redis: Redis, client: redis_py.Redis) -> None:
    a, trip = worker(redis)
    b, _ = worker(redis)
    b.force("open")
    view = trip.take(NOT_LIMITED, "r", "k", [a.storage.key]).views[a.storage.key]
    assert view["state"] == OPEN
    with pytest.raises(BreakerOpen):
        a.admit(view)


def test_the_shared_bucket_is_one_for_every_worker(redis: Redis, client: redis_py.Redis) -> None:
    _, trip_a = worker(redis)
    _, trip_b = worker(redis)
    options = RateLimitOptions(requests=3, per_s=60)
    decisions = [t.take(options, "r", "k", []).decision for t in (trip_a, trip_b) * 3]
    allowed = [d.allowed for d in decisions if d is not None]
    assert allowed == [True, True, True, False, False, False]
    refused = decisions[-1]
    assert refused is not None
    assert refused.headers["Retry-After"] == "20"  # one token every 20 s
    assert refused.headers["RateLimit"] == '"default";r=0;t=20'


def test_a_flushed_script_cache_is_loaded_again(redis: Redis, client: redis_py.Redis) -> None:
    """A restarted Redis has no scripts: redis-py answers NOSCRIPT by loading it again."""
    _, trip = worker(redis)
    options = RateLimitOptions(requests=5, per_s=60)
    first = trip.take(options, "r", "k", []).decision
    client.script_flush()
    again = trip.take(options, "r", "k", []).decision
    assert first is not None and again is not None
    assert (first.allowed, first.remaining, again.allowed, again.remaining) == (True, 4, True, 3)


def test_one_trip_reads_every_instance_and_the_balancer_skips_an_open_one(
    redis: Redis, client: redis_py.Redis
) -> None:
    one, trip = worker(redis, "i:1")
    two, _ = worker(redis, "i:2")
    one.force("open")
    views = trip.take(NOT_LIMITED, "r", "k", [one.storage.key, two.storage.key]).views
    assert views[one.storage.key]["state"] == OPEN
    assert views[two.storage.key]["state"] is None  # never written: closed
    assert not one.available(views[one.storage.key])
    assert two.available(views[two.storage.key])
