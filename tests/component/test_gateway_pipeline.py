"""The gateway as a real gunicorn process in front of real test upstreams: proxying,
auth, and every stage of the resilience pipeline, each with a test that fails without it.

One gateway serves every test here; each test has its own route and upstream name, so
breakers, budgets and buckets of one test never touch another's.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator

import pytest

from gateway.routing import load_routes
from servoscope.settings import load
from stack.ephemeral import HttpReply, free_ports, terminate, wait_for
from tests.component.gatewayrig import (
    READER_KEY,
    Gateway,
    Upstream,
    start_gateway,
    start_upstream,
    timed,
)

pytestmark = pytest.mark.component
PROBLEM = "application/problem+json"

ROUTES = """
defaults:
  rate_limit: {{enabled: false}}
  deadline: {{total_s: 3.0}}
  retry: {{max_attempts: 3, backoff_base_s: 0.01, backoff_max_s: 0.05, retry_after_max_s: 3.0}}
  attempt_timeout: {{connect_s: 0.5, read_s: 2.0}}
  bulkhead: {{max_concurrent: 16, max_wait_s: 0.0}}
  breaker: {{failures: 100, reset_s: 1.0}}
  retry_budget: {{ratio: 0.2, floor: 100, window_s: 60}}
upstreams:
  echo: {{instances: ["{a}"]}}
  limited: {{instances: ["{a}"]}}
  deadline: {{instances: ["{a}"]}}
  slow: {{instances: ["{a}"], bulkhead: {{max_concurrent: 2}}}}
  retry: {{instances: ["{a}"]}}
  budget: {{instances: ["{a}"], retry_budget: {{ratio: 0.0, floor: 2}}}}
  parallel: {{instances: ["{a}"], breaker: {{failures: 3}}}}
  flaky: {{instances: ["{b}"], breaker: {{failures: 3, reset_s: 1.0, half_open_probes: 1}}}}
  angle: {{instances: ["{e}"], breaker: {{failures: 2, reset_s: 30.0}}}}
  pair: {{instances: ["{c}", "{d}"], balance: round_robin, breaker: {{failures: 2, reset_s: 30.0}}}}
  p2c: {{instances: ["{c}", "{d}"], balance: least_outstanding}}
  gone: {{instances: ["{gone}"]}}
  checked:
    instances: ["{c}", "{d}"]
    breaker: {{enabled: false}}
    health_check: {{enabled: true, interval_s: 0.2, timeout_s: 0.5}}
routes:
  echo:
    prefix: /t/echo
    upstream: echo
    policy: {{max_body_bytes: 1024}}
    operations:
      - {{method: GET, path: /echo, scope: read}}
      - {{method: POST, path: /echo, scope: write}}
      - {{method: PUT, path: /echo, scope: write}}
      - {{method: PATCH, path: /echo, scope: write}}
      - {{method: DELETE, path: /echo, scope: write}}
      - {{method: GET, path: "/items/{{id}}", scope: read}}
  limited:
    prefix: /t/limited
    upstream: limited
    policy: {{rate_limit: {{enabled: true, requests: 3, per_s: 60}}}}
    operations: [{{method: GET, path: /echo, scope: read}}]
  deadline:
    prefix: /t/deadline
    upstream: deadline
    policy: {{deadline: {{total_s: 0.4}}}}
    operations: [{{method: GET, path: /echo, scope: read}}]
  slow:
    prefix: /t/slow
    upstream: slow
    operations: [{{method: GET, path: /echo, scope: read}}]
  retry:
    prefix: /t/retry
    upstream: retry
    operations:
      - {{method: GET, path: /echo, scope: read}}
      - {{method: POST, path: /echo, scope: write}}
  budget:
    prefix: /t/budget
    upstream: budget
    operations: [{{method: GET, path: /echo, scope: read}}]
  parallel:
    prefix: /t/parallel
    upstream: parallel
    operations: [{{method: GET, path: /echo, scope: read}}]
  flaky:
    prefix: /t/flaky
    upstream: flaky
    policy: {{retry: {{enabled: false}}}}
    operations: [{{method: GET, path: /echo, scope: read}}]
  angle:
    prefix: /t/angle
    upstream: angle
    policy: {{retry: {{enabled: false}}}}
    operations: [{{method: GET, path: /current-angle, scope: read, fallback: last_known}}]
  pair:
    prefix: /t/pair
    upstream: pair
    operations: [{{method: GET, path: /echo, scope: read}}]
  p2c:
    prefix: /t/p2c
    upstream: p2c
    operations: [{{method: GET, path: /echo, scope: read}}]
  gone:
    prefix: /t/gone
    upstream: gone
    policy: {{retry: {{enabled: false}}}}
    operations: [{{method: GET, path: /echo, scope: read}}]
  checked:
    prefix: /t/checked
    upstream: checked
    policy: {{retry: {{enabled: false}}}}
    operations: [{{method: GET, path: /echo, scope: read}}]
"""


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, Upstream]]:
    started = {name: start_upstream(name) for name in "abcde"}
    yield started
    for upstream in started.values():
        terminate(upstream.process)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstreams) -> Iterator[Gateway]:
    nobody = f"http://127.0.0.1:{free_ports(1)[0]}"  # a port nothing listens on
    routes = ROUTES.format(gone=nobody, **{name: u.url for name, u in upstreams.items()})
    running = start_gateway(tmp_path_factory.mktemp("gateway"), routes)
    yield running
    terminate(running.process)


def in_parallel(count: int, call) -> list:
    results: list = [None] * count

    def run(index: int) -> None:
        results[index] = call(index)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def assert_problem(reply: HttpReply, status: int) -> dict:
    assert reply.status == status, reply.body
    assert reply.headers["Content-Type"] == PROBLEM
    problem = reply.json()
    assert problem["status"] == status
    assert {"type", "title", "detail", "instance"} <= set(problem)
    return problem


# -- proxying -------------------------------------------------------------------


def test_methods_query_and_body_reach_the_upstream(gateway: Gateway) -> None:
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        body = json.dumps({"method": method}) if method != "GET" else None
        reply = gateway.api(
            method,
            "/t/echo/echo?x=1&y=a%20b",
            body=body,
            headers={"Content-Type": "application/json", "X-Request-ID": f"req-{method}"},
        )
        assert reply.status == 200, reply.body
        seen = reply.json()
        assert (seen["method"], seen["path"], seen["query"]) == (method, "/echo", "x=1&y=a%20b")
        assert seen["body"] == (body or "")
        assert seen["headers"]["X-Request-ID"] == f"req-{method}" == reply.headers["X-Request-ID"]
        assert seen["headers"]["X-Forwarded-For"] == "127.0.0.1"
        assert seen["headers"]["X-Forwarded-Proto"] == "http"
        assert seen["headers"]["X-Forwarded-Host"] == f"127.0.0.1:{gateway.port}"
        assert "Authorization" not in seen["headers"]
        assert 0 < int(seen["headers"]["X-Request-Deadline-Ms"]) <= 3000
    item = gateway.api("GET", "/t/echo/items/42").json()
    assert item["path"] == "/items/42"


def test_fixed_and_templated_operations_have_one_way_in(gateway: Gateway) -> None:
    """Authentication first, then 405 with Allow for a known path, OPTIONS answered,
    404 for a path under no operation — the same for a fixed and a templated path."""
    for path in ("/t/slow/echo", "/t/echo/items/42"):  # each serves GET only
        assert_problem(gateway.api("GET", path, key=None), 401)
        assert_problem(gateway.api("POST", path, key=None), 401)
        refused = gateway.api("POST", path)
        assert assert_problem(refused, 405)["instance"] == path
        assert "GET" in refused.headers["Allow"]
        options = gateway.api("OPTIONS", path)
        assert options.status == 200 and "GET" in options.headers["Allow"]
    assert gateway.api("GET", "/t/echo/items/42/more").status == 404
    assert_problem(gateway.api("GET", "/t/echo/items/42/more", key=None), 401)
    # HEAD of a GET operation is proxied: the test upstream has no HEAD, its 501 comes back.
    assert gateway.api("HEAD", "/t/echo/items/42").status == 501


def test_upstream_status_and_body_pass_through_on_pooled_connections(gateway: Gateway) -> None:
    first = gateway.api("GET", "/t/echo/echo?status=404&tag=pass")
    assert first.status == 404
    assert first.json()["server"] == "a"
    second = gateway.api("GET", "/t/echo/echo?status=418")
    assert second.status == 418
    # One keep-alive connection from the gateway's pool served both.
    assert first.json()["peer_port"] == second.json()["peer_port"]


def test_hop_by_hop_headers_are_stripped_both_ways(gateway: Gateway) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=5)
    conn.request(
        "GET",
        "/t/echo/echo?hop=1",
        headers={
            "Authorization": "Bearer servoscope-dev-key",
            "Connection": "keep-alive, X-Client-Hop",
            "X-Client-Hop": "secret",
            "Keep-Alive": "timeout=5",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "TE": "trailers",
            "X-End-To-End": "kept",
        },
    )
    response = conn.getresponse()
    seen = json.loads(response.read())
    conn.close()
    assert response.status == 200
    sent = {k.lower() for k in seen["headers"]}
    assert "x-end-to-end" in sent
    assert not sent & {"x-client-hop", "keep-alive", "proxy-authorization", "te", "connection"}
    returned = {k.lower() for k, _ in response.getheaders()}
    assert "x-upstream-name" in returned
    assert not returned & {"x-hop-secret", "keep-alive"}


def test_a_refused_connection_is_502_unreachable_not_a_timeout(gateway: Gateway) -> None:
    problem = assert_problem(gateway.api("GET", "/t/gone/echo"), 502)
    assert problem["type"].endswith("/upstream-unreachable")
    assert "could not be reached" in problem["detail"]


def test_a_body_over_the_route_limit_is_413(gateway: Gateway) -> None:
    reply = gateway.api(
        "POST",
        "/t/echo/echo?tag=big",
        body=b"x" * 2048,
        headers={"Content-Type": "application/json"},
    )
    assert "1024" in assert_problem(reply, 413)["detail"]


# -- auth, admin, openapi ---------------------------------------------------------


def test_keys_and_scopes(gateway: Gateway) -> None:
    missing = gateway.api("GET", "/t/echo/echo", key=None)
    assert_problem(missing, 401)
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert_problem(gateway.api("GET", "/t/echo/echo", key="not-a-key"), 401)
    assert gateway.api("GET", "/t/echo/echo", key=READER_KEY).status == 200
    assert (
        "write"
        in assert_problem(gateway.api("POST", "/t/echo/echo", key=READER_KEY, body="{}"), 403)[
            "detail"
        ]
    )
    assert_problem(gateway.api("GET", "/admin/breakers", key=READER_KEY), 403)
    assert_problem(gateway.api("GET", "/admin/breakers", key=None), 401)
    for open_path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert gateway.api("GET", open_path, key=None).status == 200, open_path


def test_admin_forces_breakers_and_shows_the_config(gateway: Gateway, upstreams) -> None:
    instance = f"127.0.0.1:{upstreams['a'].port}"
    breakers = gateway.api("GET", "/admin/breakers").json()["breakers"]
    assert {"upstream": "echo", "instance": instance} in [
        {"upstream": b["upstream"], "instance": b["instance"]} for b in breakers
    ]
    assert gateway.api("POST", f"/admin/breakers/echo/{instance}/open").json()["state"] == "open"
    refused = gateway.api("GET", "/t/echo/echo")
    assert_problem(refused, 503)
    assert int(refused.headers["Retry-After"]) >= 1
    assert gateway.api("POST", f"/admin/breakers/echo/{instance}/close").json()["state"] == (
        "closed"
    )
    assert_problem(gateway.api("POST", f"/admin/breakers/echo/{instance}/reset"), 404)
    assert gateway.api("GET", "/t/echo/echo").status == 200
    assert_problem(gateway.api("POST", "/admin/breakers/echo/nowhere:1/open"), 404)
    config = gateway.api("GET", "/admin/config").json()
    assert {r["name"] for r in config["routes"]} >= {"echo", "flaky"}


def test_openapi_describes_every_operation_of_the_route_table(gateway: Gateway) -> None:
    document = gateway.api("GET", "/openapi.json", key=None).json()
    assert document["openapi"].startswith("3.1")
    settings = load({**gateway.env})
    table = load_routes(gateway.routes_file, settings)
    for route in table.routes:
        for op in route.operations:
            assert op.method.lower() in document["paths"][route.prefix + op.path], (route, op)


# -- 2. rate limit ------------------------------------------------------------------


def test_rate_limit_answers_429_with_headers_once_the_window_is_spent(gateway: Gateway) -> None:
    remaining = []
    for _ in range(3):
        reply = gateway.api("GET", "/t/limited/echo")
        assert reply.status == 200
        assert reply.headers["RateLimit-Policy"] == '"default";q=3;w=60'
        remaining.append(reply.headers["RateLimit"])
    # A bucket of 3 refilled at 3 per 60 s: the next token comes in 20 s.
    assert remaining == ['"default";r=2;t=0', '"default";r=1;t=0', '"default";r=0;t=20']
    refused = gateway.api("GET", "/t/limited/echo")
    assert_problem(refused, 429)
    assert 15 <= int(refused.headers["Retry-After"]) <= 20
    assert refused.headers["RateLimit"].startswith('"default";r=0;t=')
    # Another key has its own window.
    assert gateway.api("GET", "/t/limited/echo", key=READER_KEY).status == 200
    assert gateway.metric("gateway_rate_limited_total", route="limited") == 1


# -- 3. deadline -------------------------------------------------------------------


def test_no_attempt_outlives_the_deadline(gateway: Gateway) -> None:
    reply, elapsed = timed(lambda: gateway.api("GET", "/t/deadline/echo?delay_ms=1500&tag=dl"))
    assert_problem(reply, 504)
    assert elapsed < 0.9  # the attempt's own read timeout is 2 s; the route allows 0.4 s
    seen = gateway.api("GET", "/t/deadline/echo").json()
    assert 0 < int(seen["headers"]["X-Request-Deadline-Ms"]) <= 400
    # A caller's shorter deadline wins and is passed on.
    tighter = gateway.api("GET", "/t/echo/echo", headers={"X-Request-Deadline-Ms": "150"})
    assert 0 < int(tighter.json()["headers"]["X-Request-Deadline-Ms"]) <= 150


# -- 4. bulkhead --------------------------------------------------------------------


def test_a_hung_upstream_fills_only_its_own_bulkhead(gateway: Gateway, upstreams) -> None:
    held = threading.Thread(
        target=lambda: in_parallel(
            2, lambda _i: gateway.api("GET", "/t/slow/echo?delay_ms=1500&tag=hung")
        )
    )
    held.start()
    wait_for(lambda: upstreams["a"].stats("hung")["peak"] == 2, timeout=5, message="2 hung calls")
    refused, elapsed = timed(lambda: gateway.api("GET", "/t/slow/echo?tag=hung"))
    problem = assert_problem(refused, 503)
    assert problem["type"].endswith("bulkhead-full")
    assert elapsed < 0.3
    other, other_elapsed = timed(lambda: gateway.api("GET", "/t/echo/echo"))
    assert other.status == 200 and other_elapsed < 0.3
    held.join()
    assert upstreams["a"].stats("hung")["hits"] == 2
    assert gateway.metric("gateway_bulkhead_rejections_total", upstream="slow") == 1


# -- 5. retry -----------------------------------------------------------------------


def test_idempotent_requests_are_retried_after_5xx(gateway: Gateway, upstreams) -> None:
    reply = gateway.api("GET", "/t/retry/echo?status=503&fail_first=2&tag=r1")
    assert reply.status == 200
    assert reply.json()["hit"] == 3
    assert gateway.metric("gateway_retries_total", upstream="retry", outcome="retried") >= 2


def test_commands_are_retried_only_with_an_idempotency_key(gateway: Gateway, upstreams) -> None:
    plain = gateway.api("POST", "/t/retry/echo?status=503&fail_first=1&tag=r2", body="{}")
    assert plain.status == 503
    assert upstreams["a"].stats("r2")["hits"] == 1
    keyed = gateway.api(
        "POST",
        "/t/retry/echo?status=503&fail_first=1&tag=r3",
        body="{}",
        headers={"Idempotency-Key": "k-1"},
    )
    assert keyed.status == 200
    assert upstreams["a"].stats("r3")["hits"] == 2


def test_retry_after_is_honoured_in_seconds_and_as_a_date(gateway: Gateway) -> None:
    reply, elapsed = timed(
        lambda: gateway.api("GET", "/t/retry/echo?status=503&fail_first=1&retry_after=1&tag=r4")
    )
    assert reply.status == 200 and elapsed >= 0.95
    date = urllib.parse.quote(email.utils.formatdate(time.time() + 2, usegmt=True))
    reply, elapsed = timed(
        lambda: gateway.api(
            "GET", f"/t/retry/echo?status=503&fail_first=1&tag=r5&retry_after={date}"
        )
    )
    assert reply.status == 200 and elapsed >= 0.9  # HTTP-dates have one-second resolution


def test_retries_stop_at_the_budget(gateway: Gateway, upstreams) -> None:
    for _ in range(5):
        assert gateway.api("GET", "/t/budget/echo?status=503&tag=b").status == 503
    # Budget: 2 retries per window (ratio 0). Without it: 5 x 3 attempts = 15.
    assert upstreams["a"].stats("b")["hits"] == 5 + 2
    assert gateway.metric("gateway_retry_budget_exhausted_total", upstream="budget") >= 1


# -- 6. breaker ----------------------------------------------------------------------


def test_breaker_opens_answers_fast_then_half_opens_and_closes(gateway: Gateway, upstreams) -> None:
    flaky = upstreams["b"]
    state = lambda: gateway.metric("gateway_breaker_state", upstream="flaky")  # noqa: E731
    for _ in range(5):  # 4xx are the caller's fault: never counted
        assert gateway.api("GET", "/t/flaky/echo?status=404").status == 404
    assert state() == 0
    flaky.set_mode(status=500)
    for _ in range(3):
        assert gateway.api("GET", "/t/flaky/echo?tag=f").status == 500
    refused, elapsed = timed(lambda: gateway.api("GET", "/t/flaky/echo?tag=f"))
    problem = assert_problem(refused, 503)
    assert problem["type"].endswith("breaker-open")
    assert refused.headers["Retry-After"] == "1"
    assert elapsed < 0.1
    assert flaky.stats("f")["hits"] == 3
    assert state() == 1
    assert gateway.metric("gateway_breaker_rejections_total", upstream="flaky") >= 1

    time.sleep(1.1)  # reset_s: the next call is a probe; it fails and the breaker re-opens
    assert gateway.api("GET", "/t/flaky/echo?tag=f").status == 500
    assert_problem(gateway.api("GET", "/t/flaky/echo?tag=f"), 503)

    flaky.set_mode(status=200, delay_ms=300)
    time.sleep(1.1)
    probes = in_parallel(5, lambda _i: gateway.api("GET", "/t/flaky/echo?tag=probe"))
    assert sorted(r.status for r in probes) == [200, 503, 503, 503, 503]  # one probe only
    assert flaky.stats("probe")["hits"] == 1
    flaky.set_mode()
    assert state() == 0
    assert gateway.api("GET", "/t/flaky/echo").status == 200
    transitions = {
        (f, t): gateway.metric(
            "gateway_breaker_transitions_total", upstream="flaky", from_state=f, to_state=t
        )
        for f, t in [("closed", "open"), ("open", "half-open"), ("half-open", "closed")]
    }
    assert all(count >= 1 for count in transitions.values()), transitions


def test_calls_through_one_breaker_are_not_serialized(gateway: Gateway, upstreams) -> None:
    replies, elapsed = timed(
        lambda: in_parallel(8, lambda _i: gateway.api("GET", "/t/parallel/echo?delay_ms=500&tag=p"))
    )
    assert [r.status for r in replies] == [200] * 8
    assert upstreams["a"].stats("p")["peak"] == 8
    assert elapsed < 1.5  # one call's time, not 8 x 0.5 s


# -- fallback ----------------------------------------------------------------------


def test_last_known_angle_is_served_stale_while_the_breaker_is_open(gateway, upstreams) -> None:
    fresh = gateway.api("GET", "/t/angle/current-angle?channel=0")
    assert fresh.status == 200 and "stale" not in fresh.json()
    upstreams["e"].set_mode(status=500)
    try:
        for _ in range(2):
            assert gateway.api("GET", "/t/angle/current-angle?channel=0").status == 500
        time.sleep(1.0)
        stale = gateway.api("GET", "/t/angle/current-angle?channel=0")
        assert stale.status == 200
        body = stale.json()
        assert body["stale"] is True and body["query"] == "channel=0"
        assert body["age_s"] >= 1.0
        assert int(stale.headers["Age"]) >= 1
        assert stale.headers["Warning"].startswith("110")
        # Nothing known for another channel: the breaker's 503.
        assert_problem(gateway.api("GET", "/t/angle/current-angle?channel=1"), 503)
        assert gateway.metric("gateway_fallbacks_total", route="angle") == 1
    finally:
        upstreams["e"].set_mode()


# -- load balancing ----------------------------------------------------------------


def test_round_robin_spreads_and_skips_an_ejected_instance(gateway, upstreams) -> None:
    served = [gateway.api("GET", "/t/pair/echo").json()["server"] for _ in range(10)]
    assert served.count("c") == served.count("d") == 5
    upstreams["d"].set_mode(status=503)
    try:
        # Failures on d are retried on c, so callers keep getting 200 while d is ejected.
        replies = [gateway.api("GET", "/t/pair/echo?tag=ej") for _ in range(10)]
        assert [r.status for r in replies] == [200] * 10
        assert upstreams["d"].stats("ej")["hits"] == 2  # the breaker opened after 2 failures
        assert {r.json()["server"] for r in replies} == {"c"}
    finally:
        upstreams["d"].set_mode()


def test_least_outstanding_prefers_the_idle_instance(gateway, upstreams) -> None:
    upstreams["d"].set_mode(delay_ms=800)
    try:
        busy = threading.Thread(
            target=lambda: in_parallel(6, lambda _i: gateway.api("GET", "/t/p2c/echo?tag=busy"))
        )
        busy.start()
        wait_for(lambda: upstreams["d"].stats("busy")["hits"], timeout=2, message="a slow call")
        quick = [gateway.api("GET", "/t/p2c/echo?tag=quick") for _ in range(6)]
        busy.join()
    finally:
        upstreams["d"].set_mode()
    # While d holds slow calls, every new call goes to c, which has none outstanding.
    assert [r.json()["server"] for r in quick] == ["c"] * 6


def test_active_health_checks_take_an_unready_instance_out(gateway, upstreams) -> None:
    upstreams["d"].set_mode(status=503)  # its /readyz fails too
    try:
        time.sleep(0.8)  # a few check intervals
        replies = [gateway.api("GET", "/t/checked/echo?tag=hc") for _ in range(6)]
    finally:
        upstreams["d"].set_mode()
    # Breakers are off for this upstream: only the health check keeps d out.
    assert [r.status for r in replies] == [200] * 6
    assert upstreams["d"].stats("hc")["hits"] == 0
    assert upstreams["c"].stats("hc")["hits"] == 6


def test_stage_metrics_are_exported(gateway: Gateway) -> None:
    text = gateway.api("GET", "/metrics").body.decode()
    for family in (
        "gateway_breaker_state",
        "gateway_bulkhead_in_flight",
        "gateway_bulkhead_queued",
        "gateway_shared_state_up",
        "http_client_request_duration_seconds",
    ):
        assert family in text, family
    assert gateway.metric("gateway_shared_state_up") == 0  # one worker: local state
