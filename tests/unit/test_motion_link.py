"""The motion planner's servo link on the resilience core, with a scripted servo
controller and a manual clock: two attempts with no wait between them, a 4xx is a
refusal, an open breaker refuses at once with a reason a person can read."""

from __future__ import annotations

import pytest

from services.motion.config import MotionConfig
from services.motion.servo_link import ServoLink, ServoUnavailable
from servoscope.outbound import Timeout, UpstreamError, UpstreamTimeout
from servoscope.resilience.clock import ManualClock
from tests.unit.scripted import ScriptedClient, reply

CONFIG = MotionConfig(servo_url="http://127.0.0.1:9", breaker_failures=3, breaker_reset_s=2.0)


def link(*script) -> tuple[ServoLink, ScriptedClient, ManualClock]:  # type: ignore[no-untyped-def]
    client, clock = ScriptedClient(*script), ManualClock()
    return ServoLink(CONFIG, client, clock), client, clock


def test_a_setpoint_is_sent_with_its_key_and_the_attempts_timeout() -> None:
    servo, client, _ = link(reply(200, b'{"angle": 90}'))
    servo.send_setpoint(1, 90.123456, "move-7")
    [sent] = client.attempts
    assert (sent["method"], sent["path"], sent["attempt"]) == ("POST", "/set-position", 1)
    assert sent["body"] == b'{"channel": 1, "angle": 90.1235}'
    assert sent["headers"] == {"Content-Type": "application/json", "Idempotency-Key": "move-7"}
    assert sent["timeout"] == Timeout(0.2, 0.2)  # no deadline header, no total


def test_a_failed_attempt_is_tried_once_more_at_once_whatever_retry_after_says() -> None:
    servo, client, clock = link(reply(503, Retry_After="1"), reply(200))
    servo.send_setpoint(0, 45.0, "m-1")
    assert [a["attempt"] for a in client.attempts] == [1, 2]
    assert {a["headers"]["Idempotency-Key"] for a in client.attempts} == {"m-1"}
    assert clock.slept == []  # the 50 Hz loop has no time to wait in


def test_two_failed_attempts_are_servo_unavailable_with_the_last_reason() -> None:
    servo, client, _ = link(UpstreamTimeout("no answer within 0.2s"), UpstreamError("refused"))
    with pytest.raises(ServoUnavailable, match=r"^servo controller unreachable: refused$"):
        servo.send_setpoint(0, 45.0, "m-1")
    assert len(client.attempts) == 2
    servo, _, _ = link(UpstreamError("refused"), reply(500, b'{"detail": "device hung"}'))
    with pytest.raises(ServoUnavailable, match=r"^servo controller answered 500 device hung$"):
        servo.current_angle(0)


def test_a_4xx_is_a_refusal_not_retried_and_not_counted_against_the_servo() -> None:
    servo, client, _ = link(*[reply(422, b'{"detail": "angle out of range"}')] * 5)
    for _ in range(5):
        with pytest.raises(ServoUnavailable, match="refused: 422 angle out of range"):
            servo.send_setpoint(0, 999.0, "m-1")
    assert len(client.attempts) == 5
    assert servo.breaker.state == "closed"


def test_an_open_breaker_refuses_at_once_then_lets_a_probe_through_after_its_reset() -> None:
    servo, client, clock = link(*[UpstreamError("refused")] * 3)
    for _ in range(2):
        with pytest.raises(ServoUnavailable):
            servo.send_setpoint(0, 45.0, "m-1")  # attempts 1, 2, then 3 opens the breaker
    assert len(client.attempts) == 3 and servo.breaker.state == "open"
    with pytest.raises(
        ServoUnavailable, match=r"^servo controller unavailable: circuit breaker open"
    ):
        servo.send_setpoint(0, 45.0, "m-2")
    assert len(client.attempts) == 3  # nothing reached the wire
    clock.advance(CONFIG.breaker_reset_s)
    client.script.append(reply(200, b'{"angle": 45}'))
    assert servo.current_angle(0) == 45.0
    assert servo.breaker.state == "closed"
