"""Moves through the gateway: planned profiles reach their targets, cancel stops the
stream, and a servo controller that dies mid-move fails the move and ends the stream."""

from __future__ import annotations

import json
import os
import signal
import time

from stack.ephemeral import Stack, answers_ok, ephemeral_stack, http, wait_for


def start_move(stack: Stack, **body) -> dict:
    reply = stack.api("POST", "/api/motion/moves", body=json.dumps(body))
    assert reply.status == 202, reply.body
    # The planner's own path, said as the client calls it: GET it through the gateway.
    assert reply.headers["Location"] == f"/api/motion/moves/{reply.json()['id']}"
    return reply.json()


def move_state(stack: Stack, move_id: str) -> dict:
    reply = stack.api("GET", f"/api/motion/moves/{move_id}")
    assert reply.status == 200, reply.body
    return reply.json()


def angle(stack: Stack, channel: int) -> float:
    return stack.api("GET", f"/api/servo/current-angle?channel={channel}").json()["angle"]


def target_qus(stack: Stack, channel: int) -> int:
    return stack.simulator_state()["channels"][channel]["target_qus"]


def test_a_minimum_jerk_move_follows_its_profile_to_the_target(stack: Stack) -> None:
    move = start_move(stack, channel=1, target_angle=150, profile="minimum-jerk", duration_s=2.0)
    start = move["start_angle"]
    began = time.monotonic()
    assert move["state"] in ("planned", "running")

    # Halfway through, a minimum-jerk move is at the midpoint (the servo lags a little).
    time.sleep(max(0.0, began + 1.0 - time.monotonic()))
    midway = angle(stack, 1)
    assert abs(midway - (start + 150) / 2) < 8, (start, midway)

    done = wait_for(
        lambda: (m := move_state(stack, move["id"]))["state"] == "done" and m,
        timeout=6,
        message="the move done",
    )
    assert done["progress"] == 1.0
    assert done["setpoints_sent"] == done["setpoints_total"] == 100  # 2 s at 50 Hz
    wait_for(lambda: abs(angle(stack, 1) - 150) <= 0.5, 3, message="servo at 150")


def test_a_second_move_on_a_busy_channel_is_refused(stack: Stack) -> None:
    first = start_move(stack, channel=2, target_angle=30, profile="trapezoidal", duration_s=2)
    reply = stack.api(
        "POST", "/api/motion/moves", body=json.dumps({"channel": 2, "target_angle": 60})
    )
    assert reply.status == 409
    assert reply.json()["active_move"] == first["id"]
    assert stack.api("DELETE", f"/api/motion/moves/{first['id']}").status == 200


def test_cancel_stops_the_stream(stack: Stack) -> None:
    move = start_move(stack, channel=3, target_angle=10, profile="trapezoidal", duration_s=4)
    time.sleep(0.5)
    reply = stack.api("DELETE", f"/api/motion/moves/{move['id']}")
    assert reply.status == 200
    wait_for(lambda: move_state(stack, move["id"])["state"] == "cancelled", 2, message="cancel")
    frozen = target_qus(stack, 3)
    sent = move_state(stack, move["id"])["setpoints_sent"]
    time.sleep(0.5)
    assert target_qus(stack, 3) == frozen
    assert move_state(stack, move["id"])["setpoints_sent"] == sent < 200


def test_bad_moves_are_problems(stack: Stack) -> None:
    for body, field in [
        ({"channel": 0, "target_angle": 500}, "target_angle"),
        ({"channel": 0, "target_angle": 90, "profile": "linear"}, "profile"),
        ({"channel": 0, "target_angle": 90, "duration_s": -1}, "duration_s"),
        ({"channel": 0, "target_angle": 90, "max_velocity": 0}, "max_velocity"),
        ({"channel": 0, "target_angle": 90, "duration_s": 1, "max_velocity": 9}, "max_velocity"),
        ({"channel": 0, "target_angle": 90, "speed": 10}, "speed"),
    ]:
        reply = stack.api("POST", "/api/motion/moves", body=json.dumps(body))
        assert reply.status == 422, (body, reply.body)
        assert reply.json()["field"] == field
    malformed = stack.api("GET", "/api/motion/moves/nope")
    assert (malformed.status, malformed.json()["field"]) == (400, "id")
    assert stack.api("GET", "/api/motion/moves/0123456789abcdef").status == 404


def test_servo_killed_mid_move_fails_the_move_and_stops_the_stream(tmp_path) -> None:
    with ephemeral_stack(tmp_path / "run") as stack:
        move = start_move(stack, channel=0, target_angle=20, profile="trapezoidal", duration_s=4)
        time.sleep(0.5)
        (stack.run_dir / "hold").mkdir(exist_ok=True)
        (stack.run_dir / "hold" / "servo-controller").touch()  # keep it down
        os.killpg(stack.pids()["servo-controller"], signal.SIGKILL)

        failed = wait_for(
            lambda: (m := move_state(stack, move["id"]))["state"] == "failed" and m,
            timeout=5,
            message="the move failed",
        )
        assert "unreachable" in failed["reason"], failed
        assert failed["setpoints_sent"] < failed["setpoints_total"]
        time.sleep(0.5)
        assert move_state(stack, move["id"])["setpoints_sent"] == failed["setpoints_sent"]

        # The planner's breaker opens on the dead servo: new moves are refused at once.
        refusals = [
            stack.api(
                "POST", "/api/motion/moves", body=json.dumps({"channel": 0, "target_angle": 50})
            )
            for _ in range(3)
        ]
        assert [r.status for r in refusals] == [503, 503, 503]
        assert "circuit breaker open" in refusals[-1].json()["detail"], refusals[-1].json()

        (stack.run_dir / "hold" / "servo-controller").unlink()
        wait_for(lambda: answers_ok(stack.url("servo") + "/readyz"), 15, message="servo back")
        body = json.dumps({"channel": 0, "target_angle": 90, "duration_s": 0.5})
        again = wait_for(  # the breaker lets a probe through after its reset time
            lambda: (
                (r := stack.api("POST", "/api/motion/moves", body=body)).status == 202 and r.json()
            ),
            10,
            message="a new move accepted",
        )
        wait_for(lambda: move_state(stack, again["id"])["state"] == "done", 5, message="done")


def test_a_move_is_one_trace_from_the_gateway_to_the_serial_line(stack: Stack) -> None:
    reply = stack.api(
        "POST",
        "/api/motion/moves",
        body=json.dumps({"channel": 4, "target_angle": 70, "duration_s": 0.3}),
    )
    assert reply.status == 202, reply.body
    trace_id = reply.headers["X-Trace-Id"]
    wait_for(
        lambda: move_state(stack, reply.json()["id"])["state"] == "done", 5, message="move done"
    )

    def spans():
        got = http("GET", f"{stack.url('jaeger_ui')}/api/traces/{trace_id}")
        if got.status != 200:
            return None
        trace = got.json()["data"][0]
        names = [s["operationName"] for s in trace["spans"]]
        # Each process exports in its own batches: wait for the planner's and the servo's.
        complete = names.count("POST /set-position") >= 15 and "stream move" in names
        return trace if complete else None

    trace = wait_for(spans, 15, interval=0.3, message="the move's trace in Jaeger")
    by_id = {s["spanID"]: s for s in trace["spans"]}

    def service(span):
        return trace["processes"][span["processID"]]["serviceName"]

    def parent(span):
        refs = [r["spanID"] for r in span["references"] if r["refType"] == "CHILD_OF"]
        return by_id.get(refs[0]) if refs else None

    stream = next(s for s in trace["spans"] if s["operationName"] == "stream move")
    assert service(stream) == "motion-planner"
    planner = parent(stream)
    assert (service(planner), planner["operationName"]) == ("motion-planner", "POST /moves")
    assert service(parent(parent(planner))) == "gateway"  # gateway server -> client -> planner
    setpoints = [s for s in trace["spans"] if s["operationName"] == "POST /set-position"]
    for setpoint in setpoints:
        assert service(setpoint) == "servo-controller"
        assert parent(parent(setpoint)) is stream  # planner client span, then the stream
    serial = [s for s in trace["spans"] if s["operationName"].startswith("serial ")]
    assert serial and all(service(parent(s)) == "servo-controller" for s in serial)
