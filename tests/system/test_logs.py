"""Logs a user can follow: one JSON object per line in every process's log, and the access
lines of one request carry its trace id, span id, request id, route, status and latency."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

from stack.ephemeral import Stack, wait_for

SERVICES = {"gateway": "/api/servo/set-position", "servo-controller": "/set-position"}
# Jaeger prints its version with Go's standard logger before its JSON logger exists.
JAEGER_BANNER = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d application version: ")


def json_lines(path: Path) -> list[dict]:
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if path.stem == "jaeger" and JAEGER_BANNER.match(line):
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"{path.name}:{number} is not JSON: {line[:200]}") from None
        assert isinstance(entry, dict), f"{path.name}:{number} is not an object: {line[:200]}"
        entries.append(entry)
    return entries


def test_one_request_is_followed_through_every_log_by_the_callers_ids(stack: Stack) -> None:
    # The caller's own ids, as a client already traced upstream of the gateway sends them.
    request_id = f"log-test-{uuid.uuid4().hex}"
    trace_id = uuid.uuid4().hex
    reply = stack.api(
        "POST",
        "/api/servo/set-position",
        body=json.dumps({"channel": 2, "angle": 75}),
        headers={"X-Request-ID": request_id, "traceparent": f"00-{trace_id}-{'1' * 16}-01"},
    )
    assert reply.status == 200, reply.body
    assert reply.headers["X-Request-ID"] == request_id
    assert reply.headers["X-Trace-Id"] == trace_id
    logs = stack.run_dir / "logs"

    def access_lines() -> dict[str, dict] | None:
        found = {}
        for service in SERVICES:
            mine = [
                e for e in json_lines(logs / f"{service}.log") if e.get("request_id") == request_id
            ]
            if len(mine) > 1:
                raise AssertionError(f"{service} logged request {request_id} {len(mine)} times")
            if mine:
                found[service] = mine[0]
        return found if len(found) == len(SERVICES) else None

    lines = wait_for(access_lines, timeout=10, interval=0.2, message="the access log lines")
    span_ids = set()
    for service, route in SERVICES.items():
        entry = lines[service]
        assert entry["service"] == service
        assert entry["trace_id"] == trace_id, entry
        assert re.fullmatch(r"[0-9a-f]{16}", entry["span_id"]), entry
        assert entry["route"] == route
        assert entry["status"] == 200
        assert isinstance(entry["latency_ms"], float) and entry["latency_ms"] > 0
        span_ids.add(entry["span_id"])
    assert len(span_ids) == 2, "each hop logs its own server span"
    # The gateway's wait includes the servo controller's work.
    assert lines["gateway"]["latency_ms"] >= lines["servo-controller"]["latency_ms"]


# Not JSON, on purpose or by necessity: the supervisor's log is `make up`'s progress for
# people, the simulator's first lines are its handshake (`device: /dev/pts/N`) that tools
# parse, and redis-server has no JSON log format.
NOT_JSON = {"supervisor", "simulator", "redis"}


def test_every_line_of_every_server_log_is_one_json_object(stack: Stack) -> None:
    logs = sorted((stack.run_dir / "logs").glob("*.log"))
    checked = {path.stem for path in logs} - NOT_JSON
    assert {"gateway", "servo-controller", "prometheus", "jaeger"} <= checked
    for path in logs:
        if path.stem not in NOT_JSON:
            json_lines(path)  # raises on the first line that is not
    assert json_lines(stack.run_dir / "logs" / "gateway.log"), "the gateway logged nothing"
