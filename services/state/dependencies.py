"""How device-state reads each neighbour: through the section's own pipeline of the
resilience core (deadline → breaker → attempt timeout → transport), JSON or an error."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from servoscope.resilience.pipeline import Call

Fetch = Callable[[str], Any]  # GET a path through the section's pipeline: JSON, or raise


class AnsweredWith(Exception):
    """The neighbour answered, but not 200: the section has no data (a 5xx was also
    counted in the section's breaker; a 4xx was not)."""


def get_json(pipeline: Callable[[Call], Any], name: str) -> Fetch:
    def fetch(path: str) -> Any:
        reply = pipeline(Call(method="GET", path=path))
        if reply.status != 200:
            raise AnsweredWith(f"{name} answered {reply.status}")
        return reply.json()

    return fetch


def servo_status(get: Fetch) -> Any:
    return get("/status")


def active_moves(get: Fetch) -> Any:
    return get("/moves")["moves"]


def recent_telemetry(get: Fetch, seconds: float, limit: int) -> Any:
    since = time.time() - seconds
    page = get(f"/samples?since={since:.3f}&limit={limit}")
    return {"since": since, "samples": page["samples"]}
