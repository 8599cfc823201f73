"""The servo controller publishes its sampled positions to the telemetry logger, and a
dead logger neither slows nor fails a servo command: samples that don't fit the
bounded queue are dropped and counted, and publishing resumes when the logger returns."""

from __future__ import annotations

import json
import os
import re
import signal
import time

from stack.ephemeral import answers_ok, ephemeral_stack, http, wait_for


def servo_metric(stack, name: str) -> float:
    text = http("GET", stack.url("servo") + "/metrics").body.decode()
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def stored(stack) -> int:
    return stack.api("GET", "/api/telemetry/stats").json()["samples"]


def test_positions_flow_to_the_logger_and_a_dead_logger_costs_commands_nothing(tmp_path):
    with ephemeral_stack(tmp_path / "run", SERVOSCOPE_SERVO_TELEMETRY_QUEUE_MAX="60") as stack:
        wait_for(lambda: stored(stack) >= 30, 10, message="samples stored by the logger")
        recent = stack.api("GET", "/api/telemetry/samples?channel=0&limit=5").json()["samples"]
        assert recent and all(s["channel"] == 0 for s in recent)
        assert abs(recent[0]["ts"] - time.time()) < 60

        (stack.run_dir / "hold").mkdir(exist_ok=True)
        (stack.run_dir / "hold" / "telemetry-logger").touch()
        os.killpg(stack.pids()["telemetry-logger"], signal.SIGKILL)

        slowest = 0.0
        for i in range(40):
            started = time.monotonic()
            reply = stack.api(
                "POST",
                "/api/servo/set-position",
                body=json.dumps({"channel": 0, "angle": 60 + i}),
            )
            slowest = max(slowest, time.monotonic() - started)
            assert reply.status == 200, reply.body
            time.sleep(0.05)
        # The publisher's request timeout is 0.5 s: no command ever waited on it.
        assert slowest < 0.5, slowest
        wait_for(
            lambda: servo_metric(stack, "servo_telemetry_samples_dropped_total") > 0,
            10,
            message="dropped samples counted",
        )

        published = servo_metric(stack, "servo_telemetry_samples_published_total")
        (stack.run_dir / "hold" / "telemetry-logger").unlink()
        wait_for(lambda: answers_ok(stack.url("telemetry") + "/readyz"), 20, message="logger")
        wait_for(
            lambda: servo_metric(stack, "servo_telemetry_samples_published_total") > published,
            10,
            message="publishing resumed",
        )
