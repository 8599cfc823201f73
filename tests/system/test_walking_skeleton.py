"""The whole path alive: gateway -> servo controller -> Maestro simulator on a real pty,
with real Jaeger and Prometheus, driven through the public API."""

from __future__ import annotations

import json
import time

from stack.ephemeral import Stack, http, wait_for

PROBLEM = "application/problem+json"


def angle_of(stack: Stack, channel: int = 0) -> float:
    reply = stack.api("GET", f"/api/servo/current-angle?channel={channel}")
    assert reply.status == 200, reply.body
    return reply.json()["angle"]


def set_angle(stack: Stack, angle: float, channel: int = 0):
    return stack.api(
        "POST", "/api/servo/set-position", body=json.dumps({"channel": channel, "angle": angle})
    )


def test_set_position_moves_the_servo_at_the_configured_speed(stack: Stack) -> None:
    speed_units = stack.settings.sections["servo"]["channel_defaults"]["speed"]
    assert set_angle(stack, 90).status == 200
    wait_for(lambda: abs(angle_of(stack) - 90) <= 0.5, timeout=5, message="servo at 90 degrees")

    reply = set_angle(stack, 120)
    assert reply.status == 200, reply.body
    assert reply.json() == {
        "channel": 0,
        "angle": 120.0,
        "pulse_us": 1666.75,
        "speed": speed_units,
        "acceleration": 0,
    }
    started = time.monotonic()
    samples = []
    while time.monotonic() - started < 5:
        samples.append(angle_of(stack))
        if abs(samples[-1] - 120) <= 0.5:
            break
        time.sleep(0.02)
    elapsed = time.monotonic() - started

    # 30 degrees is 166.7 us of pulse; at speed 20 (0.25 us per 10 ms) the servo moves 500 us/s.
    predicted = (1666.75 - 1500) / (speed_units * 0.25 / 0.010)
    assert abs(samples[-1] - 120) <= 0.5, samples
    assert elapsed <= predicted + 0.5, (elapsed, predicted, samples)
    intermediate = [a for a in samples if 90.5 < a < 119.5]
    assert intermediate, f"the servo jumped instead of moving: {samples}"
    assert samples == sorted(samples), f"the servo did not move monotonically: {samples}"


def commands_that_write(stack: Stack) -> dict[str, int]:
    """What the device executed, minus the reads a background poller keeps sending."""
    counts = stack.simulator_state()["commands_by_name"]
    return {name: n for name, n in counts.items() if not name.startswith("get_")}


def test_bad_requests_are_problems_and_touch_no_serial_byte(stack: Stack) -> None:
    before = commands_that_write(stack)
    good_body = json.dumps({"channel": 0, "angle": 45})

    cases = [
        (stack.api("POST", "/api/servo/set-position", key=None, body=good_body), 401, "Bearer"),
        (
            stack.api("POST", "/api/servo/set-position", key="wrong", body=good_body),
            401,
            "not valid",
        ),
        (stack.api("GET", "/api/servo/no-such-thing"), 404, ""),
        (
            stack.api("POST", "/api/servo/set-position", body='{"channel": 0, "angle": '),
            400,
            "JSON",
        ),
        (
            stack.api("POST", "/api/servo/set-position", body='{"channel":0,"angle":"x"}'),
            422,
            "angle",
        ),
        (
            stack.api("POST", "/api/servo/set-position", body='{"channel":0,"angle":NaN}'),
            400,
            "NaN",
        ),
        (
            stack.api("POST", "/api/servo/set-position", body='{"channel":99,"angle":9}'),
            422,
            "channel",
        ),
    ]
    for reply, status, mention in cases:
        assert reply.status == status, (status, reply.body)
        assert reply.headers["Content-Type"] == PROBLEM
        problem = reply.json()
        assert problem["status"] == status
        assert {"type", "title", "detail", "instance"} <= set(problem)
        assert mention in problem["detail"], problem
    assert cases[3][0].json()["detail"].startswith("the body is not valid JSON")
    assert cases[4][0].json()["field"] == "angle"
    assert commands_that_write(stack) == before


def test_status_home_and_a_retried_command_through_the_gateway(stack: Stack) -> None:
    status = stack.api("GET", "/api/servo/status")
    assert status.status == 200, status.body
    assert status.json()["state"] == "active"
    assert status.json()["channels"][0]["stale"] is False

    before = commands_that_write(stack)
    body = json.dumps({"channel": 1, "angle": 33.5})
    key = {"Idempotency-Key": f"system-{time.time_ns()}"}
    first = stack.api("POST", "/api/servo/set-position", body=body, headers=key)
    again = stack.api("POST", "/api/servo/set-position", body=body, headers=key)
    assert (first.status, again.status) == (200, 200), (first.body, again.body)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert commands_that_write(stack)["set_target"] == before.get("set_target", 0) + 1

    home = stack.api("POST", "/api/servo/home")
    assert home.status == 200, home.body
    assert commands_that_write(stack)["go_home"] == before.get("go_home", 0) + 1


def test_one_set_position_is_one_trace_from_gateway_to_serial_byte(stack: Stack) -> None:
    reply = set_angle(stack, 60)
    assert reply.status == 200
    trace_id = reply.headers["X-Trace-Id"]
    assert reply.headers["X-Request-ID"]

    def spans():
        got = http("GET", f"{stack.url('jaeger_ui')}/api/traces/{trace_id}")
        if got.status != 200:
            return None
        trace = got.json()["data"][0]
        found = trace["spans"]
        services = {trace["processes"][s["processID"]]["serviceName"] for s in found}
        return (
            (trace, found)
            if len(found) >= 4 and services >= {"gateway", "servo-controller"}
            else None
        )

    trace, found = wait_for(spans, timeout=15, interval=0.3, message="the trace in Jaeger")

    def service(span):
        return trace["processes"][span["processID"]]["serviceName"]

    def kind(span):
        return next(t["value"] for t in span["tags"] if t["key"] == "span.kind")

    def parent(span):
        refs = [r for r in span["references"] if r["refType"] == "CHILD_OF"]
        return refs[0]["spanID"] if refs else None

    by_id = {span["spanID"]: span for span in found}
    assert {span["traceID"] for span in found} == {trace_id}
    gateway_server = next(s for s in found if service(s) == "gateway" and kind(s) == "server")
    assert gateway_server["operationName"] == "POST /api/servo/set-position"
    assert parent(gateway_server) is None
    client = next(s for s in found if service(s) == "gateway" and kind(s) == "client")
    assert by_id[parent(client)] is gateway_server
    servo_server = next(
        s for s in found if service(s) == "servo-controller" and kind(s) == "server"
    )
    assert servo_server["operationName"] == "POST /set-position"
    assert by_id[parent(servo_server)] is client
    serial = next(s for s in found if s["operationName"].startswith("serial "))
    assert service(serial) == "servo-controller"
    assert by_id[parent(serial)] is servo_server
    tags = {t["key"]: t["value"] for t in serial["tags"]}
    assert tags["servo.channel"] == 0
    assert tags["servo.command"] == "set_target"
    assert tags["serial.bytes_out"] >= 4
    assert tags["serial.bytes_in"] == 2  # the Get Errors that confirms the command
    assert tags["servo.error_bits"] == 0


def test_prometheus_scrapes_every_target_and_counts_the_route(stack: Stack) -> None:
    assert set_angle(stack, 100).status == 200

    def all_up():
        results = stack.prometheus_query("up")
        jobs = {r["metric"]["job"]: r["value"][1] for r in results}
        wanted = {"gateway", "servo-controller", "prometheus"}
        return jobs if wanted <= set(jobs) and all(jobs[j] == "1" for j in wanted) else None

    wait_for(all_up, timeout=20, interval=0.5, message="every Prometheus target up")

    query = (
        'http_server_request_duration_seconds_count{job="gateway",'
        'http_route="/api/servo/set-position",http_request_method="POST"}'
    )
    counted = wait_for(
        lambda: stack.prometheus_query(query), timeout=20, interval=0.5, message=query
    )
    assert sum(float(r["value"][1]) for r in counted) >= 1
