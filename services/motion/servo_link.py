"""The motion planner's one way to the servo controller: read an angle, send a setpoint.

Setpoints carry an ``Idempotency-Key`` (move id + index), so the bounded retry here
can never apply one twice. Failures surface as :class:`ServoUnavailable` with a
reason a person can read in ``GET /moves/{id}``.
"""

from __future__ import annotations

import json

from urllib3.exceptions import HTTPError

from servoscope.outbound import UpstreamClient

ATTEMPTS = 2


class ServoUnavailable(Exception):
    """The servo controller did not take the command; ``str()`` says why."""


class ServoLink:
    def __init__(self, base_url: str, timeout_s: float) -> None:
        self.client = UpstreamClient("servo-controller", base_url)
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: bytes | None, headers: dict[str, str]):
        last = "no attempt made"
        for attempt in range(1, ATTEMPTS + 1):
            try:
                reply = self.client.request(
                    method,
                    path,
                    body=body,
                    headers=headers,
                    timeout=self.timeout_s,
                    attempt=attempt,
                )
            except HTTPError as exc:
                last = f"servo controller unreachable: {type(exc).__name__}"
                continue
            if reply.status < 500:
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
