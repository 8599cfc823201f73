"""How device-state reads each neighbour: one pooled client each, JSON or an error."""

from __future__ import annotations

import time
from typing import Any

from servoscope.outbound import UpstreamClient
from servoscope.resilience.blame import AnsweredWith


def get_json(client: UpstreamClient, path: str, timeout_s: float) -> Any:
    reply = client.request("GET", path, timeout=timeout_s)
    if reply.status != 200:
        raise AnsweredWith(reply.status, f"{client.name} answered {reply.status}")
    return reply.json()


def servo_status(client: UpstreamClient, timeout_s: float) -> Any:
    return get_json(client, "/status", timeout_s)


def active_moves(client: UpstreamClient, timeout_s: float) -> Any:
    return get_json(client, "/moves", timeout_s)["moves"]


def recent_telemetry(client: UpstreamClient, timeout_s: float, seconds: float, limit: int) -> Any:
    since = time.time() - seconds
    page = get_json(client, f"/samples?since={since:.3f}&limit={limit}", timeout_s)
    return {"since": since, "samples": page["samples"]}
