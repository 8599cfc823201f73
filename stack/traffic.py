"""A little of everything a user does through the gateway, so dashboards and previews
have data to show: commands, reads, and the mistakes callers make (4xx)."""

from __future__ import annotations

import json

from stack.ephemeral import Stack, wait_for

SERVO_ROUTES = ("/set-position", "/current-angle")
NOT_PROBES = 'http_route!~"/healthz|/readyz|/metrics"'


def mixed_traffic(stack: Stack, rounds: int = 20, first: int = 0) -> dict[int, int]:
    """Send ``rounds`` rounds of requests; returns how many answers had each status.
    Round ``i`` commands its own channel and angle, so call after call with a growing
    ``first`` keeps the servos moving."""
    statuses: dict[int, int] = {}
    for i in range(first, first + rounds):
        replies = [
            stack.api(
                "POST",
                "/api/servo/set-position",
                body=json.dumps({"channel": i % 4, "angle": 30 + (i * 37) % 120}),
            ),
            stack.api("GET", f"/api/servo/current-angle?channel={i % 4}"),
            stack.api("POST", "/api/servo/set-position", body='{"channel":0,"angle":"x"}'),
            stack.api("GET", "/api/servo/current-angle?channel=0", key=None),
            stack.api("GET", "/api/servo/no-such-thing"),
        ]
        for reply in replies:
            statuses[reply.status] = statuses.get(reply.status, 0) + 1
    return statuses


def rated_traffic(stack: Stack, rounds: int = 20) -> dict[int, int]:
    """Mixed traffic that Prometheus has seen *change*, so ``rate()`` and the rules over it
    have values: a series' first sample is its baseline, so requests that only create
    series count for nothing. A first round creates them, the rest is rated."""
    statuses = mixed_traffic(stack, rounds=1)
    requests = "http_server_request_duration_seconds_count"
    created = [f'{requests}{{job="gateway",http_response_status_code="{s}"}}' for s in statuses]
    created += [f'{requests}{{job="servo-controller",http_route="{r}"}}' for r in SERVO_ROUTES]
    wait_for_data(stack, created)
    for status, count in mixed_traffic(stack, rounds).items():
        statuses[status] = statuses.get(status, 0) + count
    settled = [
        'slo:sli_error:ratio_rate5m{slo="servo-command-latency"} >= 0',
        'job_route:http_server_request_errors:ratio_rate1m{job="gateway"} >= 0',
        # The servo panels leave the probes out: a rate of the probes alone is not enough.
        f'rate({requests}{{job="servo-controller",{NOT_PROBES}}}[1m]) > 0',
    ]
    wait_for_data(stack, settled)
    return statuses


def wait_for_data(stack: Stack, queries: list[str], timeout: float = 30) -> None:
    """Wait until Prometheus answers each query with at least one series."""
    for promql in queries:
        wait_for(
            lambda q=promql: stack.prometheus_query(q),
            timeout=timeout,
            interval=0.5,
            message=promql,
        )
