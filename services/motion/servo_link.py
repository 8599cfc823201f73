"""The motion planner's one way to the servo controller: read an angle, send a setpoint.

The same protections as the gateway's, from :mod:`servoscope.resilience`: a circuit
breaker (not locked over the call) so a dead servo controller is refused at once
instead of costing every setpoint its timeouts, a timeout on every attempt, and a
bounded retry that is safe because each setpoint carries an ``Idempotency-Key``
(move id + index) and so can never be applied twice. Failures surface as
:class:`ServoUnavailable` with a reason a person can read in ``GET /moves/{id}``.
"""

from __future__ import annotations

import json

from prometheus_client import Counter, Gauge

from servoscope.outbound import RequestUnsendable, UpstreamClient, UpstreamError
from servoscope.resilience.blame import counts_against_upstream
from servoscope.resilience.breaker import (
    Breaker,
    BreakerMetrics,
    BreakerOpen,
    BreakerOptions,
)
from servoscope.resilience.sharedstate import SharedState

ATTEMPTS = 2
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
    def __init__(self, base_url: str, timeout_s: float, breaker: BreakerOptions) -> None:
        self.client = UpstreamClient("servo-controller", base_url)
        self.timeout_s = timeout_s
        instance = base_url.split("://", 1)[-1]
        self.breaker = Breaker("servo", instance, breaker, SharedState.local(), BREAKER)

    def _call(self, method: str, path: str, body: bytes | None, headers: dict[str, str]):
        last = "no attempt made"
        for attempt in range(1, ATTEMPTS + 1):
            try:
                self.breaker.admit()
            except BreakerOpen as refused:
                raise ServoUnavailable(f"servo controller unavailable: {refused}") from None
            try:
                reply = self.client.request(
                    method,
                    path,
                    body=body,
                    headers=headers,
                    timeout=self.timeout_s,
                    attempt=attempt,
                )
            except RequestUnsendable as exc:
                self.breaker.record_outcome(exc)  # not counted: nothing was sent
                raise ServoUnavailable(f"the setpoint could not be sent: {exc}") from None
            except UpstreamError as exc:
                self.breaker.record_outcome(exc)
                last = f"servo controller unreachable: {exc}"
                continue
            self.breaker.record_outcome(reply)  # a 4xx is our request's fault, not its
            if not counts_against_upstream(reply):
                if reply.status >= 400:
                    detail = _detail(reply.body)
                    raise ServoUnavailable(f"servo controller refused: {reply.status} {detail}")
                return reply.json()
            last = f"servo controller answered {reply.status} {_detail(reply.body)}"
        raise ServoUnavailable(last)

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
