"""Samples and events through Redis Streams on a whole stack: stored by the logger,
queryable at the gateway, their traces linked across the broker in Jaeger, and a Redis
outage that costs servo commands nothing and loses no sample."""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import time
import urllib.parse
from typing import Any

import pytest

from chaos.probes import samples_lost_through_stream, stream_samples_lost
from servoscope import streams
from stack.ephemeral import Stack, ephemeral_stack, http, wait_for

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    with ephemeral_stack(tmp_path_factory.mktemp("events") / "run") as running:
        yield running


def metric(stack: Stack, component: str, name: str) -> float:
    text = http("GET", stack.url(component) + "/metrics").body.decode()
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def linked_consumer_spans(stack: Stack, operation: str, trace_id: str) -> list[dict[str, Any]]:
    """telemetry-logger spans named ``operation`` that link to a span of ``trace_id``."""
    query = urllib.parse.urlencode(
        {"service": "telemetry-logger", "operation": operation, "lookback": "5m", "limit": 200}
    )
    reply = http("GET", f"{stack.url('jaeger_ui')}/api/traces?{query}")
    found = []
    for trace in reply.json().get("data") or []:
        for span in trace["spans"]:
            if span["operationName"] == operation and any(
                ref["traceID"] == trace_id for ref in span.get("references", [])
            ):
                found.append(span)
    return found


def span_kind(span: dict[str, Any]) -> str:
    return next((t["value"] for t in span["tags"] if t["key"] == "span.kind"), "")


def test_a_set_position_trace_is_linked_to_the_consumer_span_that_stored_its_samples(stack):
    reply = stack.api(
        "POST", "/api/servo/set-position", body=json.dumps({"channel": 2, "angle": 100})
    )
    assert reply.status == 200, reply.body
    trace_id = reply.headers["X-Trace-Id"]
    spans = wait_for(
        lambda: linked_consumer_spans(stack, f"process {streams.SAMPLES}", trace_id),
        30,
        interval=1,
        message="a consumer span linked to the set-position's trace",
    )
    assert span_kind(spans[0]) == "consumer"
    # The producer span is in the command's own trace, a child of the servo controller.
    whole = http("GET", f"{stack.url('jaeger_ui')}/api/traces/{trace_id}").json()["data"][0]
    producers = [s for s in whole["spans"] if s["operationName"] == f"create {streams.SAMPLES}"]
    assert producers and span_kind(producers[0]) == "producer"
    link_targets = {ref["spanID"] for ref in spans[0]["references"]}
    assert producers[0]["spanID"] in link_targets
    # And its samples were stored: channel 2 reports positions from the stream.
    samples = stack.api("GET", "/api/telemetry/samples?channel=2&limit=5").json()["samples"]
    assert samples and samples[0]["entry_id"] and samples[0]["producer"].startswith("servo")


def test_a_moves_events_are_queryable_and_linked_to_its_trace(stack):
    reply = stack.api(
        "POST",
        "/api/motion/moves",
        body=json.dumps({"channel": 1, "target_angle": 120, "duration_s": 0.4}),
    )
    assert reply.status in (201, 202), reply.body
    move_id, trace_id = reply.json()["id"], reply.headers["X-Trace-Id"]

    def events() -> list[dict[str, Any]]:
        page = stack.api("GET", f"/api/telemetry/events?subject={move_id}").json()["events"]
        return page if len(page) == 3 else []

    stored = wait_for(events, 30, interval=0.5, message="the move's three events stored")
    # The move ends done, or failed if this machine was too busy to keep its setpoints'
    # deadlines: either way the last event is the state the planner reports.
    final = stack.api("GET", f"/api/motion/moves/{move_id}").json()["state"]
    assert [e["kind"] for e in stored] == ["accepted", "started", final], stored
    assert {e["trace_id"] for e in stored} == {trace_id}
    assert all(e["channel"] == 1 and e["stream"] == streams.MOVE_EVENTS for e in stored)
    wait_for(
        lambda: linked_consumer_spans(stack, f"process {streams.MOVE_EVENTS}", trace_id),
        30,
        interval=1,
        message="a consumer span linked to the move's trace",
    )
    connected = stack.api("GET", "/api/telemetry/events?kind=connected").json()["events"]
    assert connected and connected[0]["stream"] == streams.DEVICE_EVENTS


@pytest.mark.parametrize(
    ("query", "field"),
    [("kind=exploded", "kind"), ("colour=red", "colour"), ("limit=0", "limit"),
     ("since=nan", "since"), ("cursor=-1", "cursor")],
)  # fmt: skip
def test_bad_event_queries_are_a_problem_naming_the_parameter(stack, query, field):
    reply = stack.api("GET", f"/api/telemetry/events?{query}")
    assert reply.status == 422, reply.body
    assert reply.headers["Content-Type"].startswith("application/problem+json")
    assert reply.json()["field"] == field


def test_redis_down_costs_commands_nothing_and_buffered_samples_arrive_when_it_returns(stack):
    def commands(count: int) -> list[float]:
        took = []
        for i in range(count):
            started = time.monotonic()
            reply = stack.api(
                "POST", "/api/servo/set-position", body=json.dumps({"channel": 3, "angle": 40 + i})
            )
            took.append(time.monotonic() - started)
            assert reply.status == 200, reply.body
            time.sleep(0.05)
        return took

    baseline = commands(30)
    (stack.run_dir / "hold").mkdir(exist_ok=True)
    (stack.run_dir / "hold" / "redis").touch()
    os.killpg(stack.pids()["redis"], signal.SIGKILL)
    during = commands(30)
    # Judged against this run's own baseline: the broker is not on the command path.
    assert statistics.median(during) <= 3 * statistics.median(baseline) + 0.02, (
        baseline,
        during,
    )
    buffered = 'stream_publish_buffered_entries{stream="servoscope:samples"}'
    wait_for(lambda: metric(stack, "servo", buffered) > 100, 10, message="samples buffered")
    assert metric(stack, "servo", 'stream_publish_buffer_max_entries{stream="servoscope:samples"}')
    (stack.run_dir / "hold" / "redis").unlink()
    # New samples keep arriving between flushes: flushed = back to a few.
    wait_for(lambda: metric(stack, "servo", buffered) < 100, 30, message="the buffer flushed")
    redis_port = stack.settings.port("redis")
    client = streams.connect(f"redis://127.0.0.1:{redis_port}/0", 2.0)

    def drained() -> bool:
        backlog = streams.backlog(client, streams.SAMPLES)
        return backlog.lag == 0 and backlog.pending == 0

    wait_for(drained, 60, interval=0.5, message="the logger caught up")
    # Samples keep flowing: the newest published may still be on their way (settle_s).
    lost = samples_lost_through_stream(stack.url("telemetry"), redis_port, settle_s=30)
    assert lost == 0, stream_samples_lost(stack.url("telemetry"), redis_port)
    dropped = 'stream_publish_dropped_entries_total{stream="servoscope:samples"}'
    assert metric(stack, "servo", dropped) == 0
