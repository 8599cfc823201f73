"""What one set-position looks like in Jaeger, wherever the stack runs (compose, Kubernetes)."""

from __future__ import annotations

from typing import Any

# The spans a set-position makes, from the gateway down to the byte on the serial line.
GATEWAY_TO_SERIAL = {
    ("gateway", "POST /api/servo/set-position"),
    ("servo-controller", "POST /set-position"),
    ("servo-controller", "serial set_target"),
}


def span_names(trace: dict[str, Any]) -> list[tuple[str, str]]:
    """(service, operation) of each span of a trace as Jaeger's query API returns it."""
    return [
        (trace["processes"][span["processID"]]["serviceName"], span["operationName"])
        for span in trace["spans"]
    ]
