"""Gateway processes share one breaker and one rate-limit window through a real
redis-server; without Redis they keep serving on local state, and share again after.

Which gunicorn worker accepts a connection is the kernel's choice, so the sharing is
proven between two gateway masters (replicas) on one Redis, which we can address one
by one; workers of one master share in exactly the same way (each is a process with
its own memory), and replica A runs two of them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from bench.shared_state_trips import measure
from stack.ephemeral import terminate, wait_for
from tests.component.gatewayrig import (
    Gateway,
    Redis,
    Upstream,
    start_gateway,
    start_redis,
    start_upstream,
)

pytestmark = pytest.mark.component
CONCURRENT = 16

ROUTES = """
defaults:
  rate_limit: {{enabled: false}}
  retry: {{enabled: false}}
upstreams:
  shared: {{instances: ["{url}"], breaker: {{failures: 3, reset_s: 1.0}}}}
  limited: {{instances: ["{url}"]}}
  plain: {{instances: ["{url}"]}}
routes:
  shared:
    prefix: /t/shared
    upstream: shared
    operations: [{{method: GET, path: /echo, scope: read}}]
  limited:
    prefix: /t/limited
    upstream: limited
    policy: {{rate_limit: {{enabled: true, requests: 4, per_s: 60}}}}
    operations: [{{method: GET, path: /echo, scope: read}}]
  plain:
    prefix: /t/plain
    upstream: plain
    policy: {{rate_limit: {{enabled: true, requests: 1000, per_s: 60}}}}
    operations: [{{method: GET, path: /echo, scope: read}}]
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    started = start_upstream("s")
    yield started
    terminate(started.process)


@pytest.fixture(scope="module")
def redis() -> Iterator[Redis]:
    started = start_redis()
    yield started
    terminate(started.process)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, upstream: Upstream, redis: Redis) -> Iterator[list[Gateway]]:
    routes = ROUTES.format(url=upstream.url)
    work = tmp_path_factory.mktemp("shared")
    running = [
        start_gateway(work / "a", routes, workers=2, threads=8, redis_port=redis.port),
        start_gateway(work / "b", routes, workers=1, threads=8, redis_port=redis.port),
    ]
    yield running
    for gateway in running:
        terminate(gateway.process)


def burst(gateway: Gateway, path: str, count: int = CONCURRENT) -> list[int]:
    """``count`` concurrent requests, each on a fresh connection."""
    statuses: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        status = gateway.api("GET", path).status
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_replicas_spend_one_rate_limit_bucket(replicas: list[Gateway]) -> None:
    a, b = replicas
    assert [a.api("GET", "/t/limited/echo").status for _ in range(2)] == [200, 200]
    assert [b.api("GET", "/t/limited/echo").status for _ in range(2)] == [200, 200]
    # Four of four are spent, wherever they were spent: local buckets would allow 2 more each.
    assert a.api("GET", "/t/limited/echo").status == 429
    assert b.api("GET", "/t/limited/echo").status == 429


def test_a_request_costs_one_redis_round_trip() -> None:
    """Rate limit, retry budget and breaker: one script, and a success on a breaker with
    no failure writes nothing (gateway/sharedtrip.py), measured as docs/gateway.md quotes it."""
    for _ in range(3):  # a busy machine may push a Redis call past its timeout: again
        result = measure(requests=40)
        if not result["fell_back"]:
            break
    assert not result["fell_back"], "every run fell back to local state: Redis too slow"
    assert result["round_trips"] == 1, result
    assert result["by_command"] == {
        "evalsha": 1,  # the script runs the rest:
        "time": 1,  # the bucket, on Redis's clock: TIME, HMGET, HSET, PEXPIRE
        "hmget": 2,  # ... and the breaker's hash
        "hset": 1,
        "pexpire": 1,
        "incr": 1,  # the budget's request count of this second
        "expire": 1,
    }


def test_replicas_see_one_breaker_and_one_probe_between_them(
    replicas: list[Gateway], upstream: Upstream
) -> None:
    a, b = replicas
    upstream.set_mode(status=500)
    try:
        assert [a.api("GET", "/t/shared/echo?tag=sh").status for _ in range(3)] == [500] * 3
        assert b.api("GET", "/t/shared/echo?tag=sh").status == 503  # opened by a
        assert upstream.stats("sh")["hits"] == 3
        upstream.set_mode(delay_ms=300)
        time.sleep(1.1)  # reset_s: half-open; one probe may go, from any process
        statuses = []
        threads = [
            threading.Thread(
                target=lambda g=g: statuses.extend(burst(g, "/t/shared/echo?tag=pr", count=4))
            )
            for g in (a, b)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        upstream.set_mode()
    assert upstream.stats("pr")["hits"] == 1
    assert sorted(statuses) == [200] + [503] * 7
    assert b.api("GET", "/t/shared/echo").status == 200  # closed for everyone


def test_without_redis_the_gateway_keeps_serving_and_says_so(
    replicas: list[Gateway], redis: Redis
) -> None:
    gateway = replicas[0]
    assert gateway.metric("gateway_shared_state_up") == 1
    terminate(redis.process)
    try:

        def noticed() -> bool:
            assert all(s == 200 for s in burst(gateway, "/t/plain/echo", count=4))
            return gateway.metric("gateway_shared_state_up") == 0

        wait_for(noticed, timeout=10, interval=0.2, message="gateway_shared_state_up 0")
        assert "redis unavailable" in gateway.log()
    finally:
        redis.start_again()

    # Both workers must come back; /metrics on the shared port answers from either, and
    # only a worker that saw Redis go logs its return, so wait for both signs.
    def resumed() -> bool:
        burst(gateway, "/t/plain/echo", count=4)
        back = gateway.metric("gateway_shared_state_up") == 1
        return back and "redis is back" in gateway.log()

    wait_for(resumed, timeout=15, interval=0.3, message="gateway_shared_state_up 1, logged")
