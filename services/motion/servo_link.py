"""The motion planner's one way to the servo controller: read an angle, send a setpoint.

A pipeline of the resilience core (:mod:`servoscope.resilience.pipeline`), with the
planner's own policy (:class:`~services.motion.config.MotionConfig`): retry → breaker →
attempt timeout → transport. A setpoint gets two attempts with no wait between them (the
50 Hz loop has no time to wait in), which is safe because each carries an
``Idempotency-Key`` (move id + index) and so can never be applied twice; any 5xx or lost
answer is worth the second attempt, a 4xx is a refusal (not retried, not counted against
the servo controller). The breaker (not locked over the call) refuses at once while the
servo controller is dead instead of costing every setpoint its timeouts. Failures surface
as :class:`ServoUnavailable` with a reason a person can read in ``GET /moves/{id}``.
"""

from __future__ import annotations

import json
from typing import Any

from prometheus_client import Counter, Gauge

from services.motion.config import MotionConfig
from servoscope.outbound import RequestUnsendable, UpstreamClient
from servoscope.resilience.attempt import (
    AttemptFailed,
    AttemptTimeoutStage,
    BreakerStage,
    Client,
    OneTarget,
    TransportStage,
)
from servoscope.resilience.breaker import Breaker, BreakerMetrics, BreakerOpen
from servoscope.resilience.clock import SYSTEM_CLOCK, Clock
from servoscope.resilience.pipeline import Call, Pipeline
from servoscope.resilience.retry import RetryPolicy, RetryStage
from servoscope.resilience.sharedstate import SharedState

ANY_5XX = frozenset(range(500, 600))  # the servo controller's own failure: try once more
BREAKER = BreakerMetrics(
    Gauge(
        "motion_breaker_state",
        "The motion planner's breaker on the servo controller: 0 closed, 1 open, 2 half-open.",
        ["upstream", "instance"],
    ),
    Counter(
        "motion_breaker_transitions",
        "State changes of the motion planner's breaker.",
        ["upstream", "instance", "from_state", "to_state"],
    ),
)


class ServoUnavailable(Exception):
    """The servo controller did not take the command; ``str()`` says why."""


class ServoLink:
    def __init__(
        self,
        config: MotionConfig,
        client: Client | None = None,  # a scripted one in unit tests
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        client = client or UpstreamClient("servo-controller", config.servo_url)
        instance = config.servo_url.split("://", 1)[-1]
        self.breaker = Breaker(
            "servo", instance, config.breaker, SharedState.local(), BREAKER, clock=clock
        )
        retry = RetryPolicy(config.retry, "servo", clock=clock, prefix="motion", retry_on=ANY_5XX)
        self.pipeline = Pipeline(
            [
                RetryStage(retry),
                BreakerStage(OneTarget(client, self.breaker)),
                AttemptTimeoutStage(config.attempt_timeout),
                TransportStage("servo controller"),
            ]
        )

    def _call(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Any:
        try:
            reply = self.pipeline(Call(method=method, path=path, body=body, outbound=headers))
        except BreakerOpen as refused:
            raise ServoUnavailable(f"servo controller unavailable: {refused}") from None
        except RequestUnsendable as exc:  # not counted: nothing was sent
            raise ServoUnavailable(f"the setpoint could not be sent: {exc}") from None
        except AttemptFailed as failed:  # both attempts got no answer
            raise ServoUnavailable(f"servo controller unreachable: {failed.cause}") from None
        if reply.status >= 500:  # on both attempts
            raise ServoUnavailable(
                f"servo controller answered {reply.status} {_detail(reply.body)}"
            )
        if reply.status >= 400:  # our request's fault, not its: counted as an answer
            raise ServoUnavailable(
                f"servo controller refused: {reply.status} {_detail(reply.body)}"
            )
        return reply.json()

    def current_angle(self, channel: int) -> float:
        return float(self._call("GET", f"/current-angle?channel={channel}", None, {})["angle"])

    def send_setpoint(self, channel: int, angle: float, key: str) -> None:
        body = json.dumps({"channel": channel, "angle": round(angle, 4)}).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        self._call("POST", "/set-position", body, headers)


def _detail(body: bytes) -> str:
    try:
        return str(json.loads(body).get("detail", ""))
    except (ValueError, AttributeError):
        return ""
