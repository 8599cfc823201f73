"""The whole pipeline in process: no gunicorn, no socket, no sleep.

Its clock is a manual one and each upstream instance's client is a scripted stand-in
with the client seam's one method (``request``), so every stage runs for real in the
order of :data:`gateway.stages.ORDER` (the gateway's own, then the core's) and a test
reads what reached the "wire".
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from opentelemetry import trace
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from gateway.pipeline import Call, Pipeline
from gateway.proxy import Answer
from gateway.routing import load_routes
from servoscope.outbound import Reply, UpstreamError
from servoscope.problems import Problem
from servoscope.resilience.clock import ManualClock
from servoscope.resilience.sharedstate import SharedState
from servoscope.settings import load
from tests.unit.scripted import ScriptedClient
from tests.unit.scripted import reply as ok

TABLE = """
upstreams:
  up:
    instances: ["http://127.0.0.1:9"]
    breaker: {failures: 2, reset_s: 5.0}
routes:
  echo:
    prefix: /t
    upstream: up
    policy:
      rate_limit: {enabled: true, requests: 5, per_s: 60}
      deadline: {total_s: 3.0}
      retry: {max_attempts: 3, backoff_base_s: 0.05, backoff_max_s: 0.2}
    operations:
      - {method: GET, path: /echo, scope: read}
      - {method: POST, path: /echo, scope: write}
"""


@pytest.fixture
def rig(tmp_path: Path):
    (tmp_path / "routes.yaml").write_text(textwrap.dedent(TABLE))
    table = load_routes(tmp_path / "routes.yaml", load({}))
    clock = ManualClock()
    pipeline = Pipeline(table, SharedState.local(), clock=clock)

    def script(*outcomes: Reply | Exception) -> ScriptedClient:
        upstream = ScriptedClient(*outcomes)
        pipeline.balancers["up"].members[0].client = upstream  # type: ignore[assignment]
        return upstream

    def send(method: str = "GET", **headers: str) -> Answer:
        route = table.routes[0]
        op = next(o for o in route.operations if o.method == method)
        request = Request(
            EnvironBuilder(path="/t/echo", method=method, headers=headers).get_environ()
        )
        call = Call(
            route=route,
            operation=op,
            request=request,
            key_name="key",
            request_id="req-1",
            span=trace.get_current_span(),
        )
        return pipeline.handle(call)

    return pipeline, clock, script, send


def test_an_answer_goes_through_every_stage_to_the_wire_once(rig) -> None:
    _, clock, script, send = rig
    upstream = script(ok())
    answer = send()
    assert answer.status == 200 and answer.body == b'{"ok": true}'
    [attempt] = upstream.attempts
    assert (attempt["method"], attempt["path"], attempt["attempt"]) == ("GET", "/echo", 1)
    assert attempt["headers"]["X-Request-Deadline-Ms"] == "3000"
    assert attempt["timeout"].total == 3.0
    assert attempt["attributes"]["gateway.breaker.state"] == "closed"
    assert dict(answer.headers)["RateLimit-Policy"] == '"default";q=5;w=60'
    assert clock.slept == []


def test_a_transient_failure_is_retried_after_a_backoff_on_the_clock(rig) -> None:
    _, clock, script, send = rig
    upstream = script(ok(503), ok(200))
    assert send().status == 200
    assert [a["attempt"] for a in upstream.attempts] == [1, 2]
    assert len(clock.slept) == 1 and 0 <= clock.slept[0] <= 0.2
    # The second attempt is told what is left of the deadline after the wait.
    left = int(upstream.attempts[1]["headers"]["X-Request-Deadline-Ms"])
    assert left == int((3.0 - clock.slept[0]) * 1000)


def test_a_command_without_idempotency_key_is_sent_once(rig) -> None:
    pipeline, _, script, send = rig
    upstream = script(ok(503), ok(200))
    assert send("POST").status == 503 and len(upstream.attempts) == 1
    pipeline.balancers["up"].members[0].breaker.force("close")  # forget that 503
    upstream = script(ok(503), ok(200))
    assert send("POST", **{"Idempotency-Key": "k-1"}).status == 200
    assert len(upstream.attempts) == 2


def test_no_retry_whose_wait_would_pass_the_deadline(rig) -> None:
    _, clock, script, send = rig
    upstream = script(ok(503, Retry_After="2"), ok(200))
    assert send(**{"X-Request-Deadline-Ms": "1500"}).status == 503
    assert len(upstream.attempts) == 1 and clock.slept == []


def test_failures_open_the_breaker_which_refuses_at_once_then_lets_a_probe_through(rig) -> None:
    _, clock, script, send = rig
    upstream = script(UpstreamError("refused"), UpstreamError("refused"))
    with pytest.raises(Problem) as refused:
        send()  # two failed attempts open it; the third attempt is refused by it
    assert (refused.value.status, refused.value.slug) == (503, "breaker-open")
    assert refused.value.headers["Retry-After"] == "5"
    assert len(upstream.attempts) == 2
    with pytest.raises(Problem, match="breaker of up is open"):
        send()
    assert len(upstream.attempts) == 2  # nothing reached the wire
    clock.advance(5.0)
    upstream = script(ok())
    assert send().status == 200
    assert upstream.attempts[0]["attributes"]["gateway.breaker.state"] == "half-open"
    pipeline = rig[0]
    assert pipeline.balancers["up"].members[0].breaker.state == "closed"


def test_the_rate_limit_refuses_before_anything_is_sent(rig) -> None:
    _, _, script, send = rig
    upstream = script(*[ok()] * 6)
    for _ in range(5):
        assert send().status == 200
    with pytest.raises(Problem) as limited:
        send()
    assert limited.value.status == 429 and "Retry-After" in limited.value.headers
    assert len(upstream.attempts) == 5


def test_the_retry_budget_counts_a_request_once_and_only_if_it_was_sent(rig) -> None:
    pipeline, _, script, send = rig
    budget = pipeline.budgets["up"]
    script(ok(503), ok(200))
    assert send().status == 200  # two attempts, one request, one retry
    assert budget.totals() == (1, 1)
    script(UpstreamError("refused"), UpstreamError("refused"))
    with pytest.raises(Problem, match="breaker of up is open"):
        send()  # two failures open the breaker, which refuses the third attempt
    assert budget.totals() == (2, 3)
    with pytest.raises(Problem, match="breaker of up is open"):
        send()  # refused before any attempt: not a request sent upstream
    assert budget.totals() == (2, 3)


def test_a_request_that_never_reached_an_attempt_earns_no_retry(rig) -> None:
    pipeline, _, script, send = rig
    budget = pipeline.budgets["up"]
    upstream = script(ok())
    with pytest.raises(Problem) as late:
        send(**{"X-Request-Deadline-Ms": "0"})  # its caller's deadline has already passed
    assert late.value.status == 504 and upstream.attempts == []
    assert budget.totals() == (0, 0)  # counted on the way in, taken back on the way out
    assert send().status == 200
    assert budget.totals() == (1, 0)
