"""Every metric the gateway's resilience pipeline exports, defined once.

Dashboards and alerts (observability/) are built on exactly these names: rename
one only together with them. One family per stage; the HTTP server and client
histograms live in :mod:`servoscope.metrics`.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from servoscope.resilience.breaker import BreakerMetrics
from servoscope.resilience.bulkhead import BulkheadMetrics
from servoscope.resilience.retry import RetryMetrics

BREAKER_STATE = Gauge(
    "gateway_breaker_state",
    "Circuit breaker state per upstream instance: 0 closed, 1 open, 2 half-open.",
    ["upstream", "upstream_instance"],
)
BREAKER_TRANSITIONS = Counter(
    "gateway_breaker_transitions_total",
    "Circuit breaker state changes this worker made (another worker's show in its own count).",
    ["upstream", "upstream_instance", "from_state", "to_state"],
)
BREAKER = BreakerMetrics(BREAKER_STATE, BREAKER_TRANSITIONS)
BREAKER_REJECTIONS = Counter(
    "gateway_breaker_rejections_total",
    "Requests answered without calling the upstream because its breakers were open.",
    ["upstream"],
)
RETRIES = Counter(
    "gateway_retries_total",
    "Retry decisions: retried, budget_exhausted (retry refused by the budget), gave_up.",
    ["upstream", "outcome"],
)
RETRY_BUDGET_EXHAUSTED = Counter(
    "gateway_retry_budget_exhausted_total",
    "Retries refused because the upstream's retry budget was spent.",
    ["upstream"],
)
BULKHEAD_IN_FLIGHT = Gauge(
    "gateway_bulkhead_in_flight",
    "Calls holding a bulkhead slot of the upstream.",
    ["upstream"],
)
BULKHEAD_QUEUED = Gauge(
    "gateway_bulkhead_queued",
    "Calls waiting for a bulkhead slot of the upstream.",
    ["upstream"],
)
BULKHEAD_REJECTIONS = Counter(
    "gateway_bulkhead_rejections_total",
    "Requests refused with 503 because the upstream's bulkhead was full.",
    ["upstream"],
)
RETRY = RetryMetrics(RETRIES, RETRY_BUDGET_EXHAUSTED)
BULKHEAD = BulkheadMetrics(BULKHEAD_IN_FLIGHT, BULKHEAD_QUEUED, BULKHEAD_REJECTIONS)
RATE_LIMITED = Counter(
    "gateway_rate_limited_total",
    "Requests refused with 429 by the per-key rate limit.",
    ["route"],
)
FALLBACKS = Counter(
    "gateway_fallbacks_total",
    "Stale answers served by a route's fallback while its upstream was unavailable.",
    ["route"],
)
SHARED_STATE_UP = Gauge(
    "gateway_shared_state_up",
    "1 when breakers, rate limits and budgets are shared through Redis; 0 on local state.",
)
SHARED_STATE_CONFIGURED = Gauge(
    "gateway_shared_state_configured",
    "1 when this worker is configured to share state through Redis; 0 when local by "
    "configuration (one worker), so a 0 of gateway_shared_state_up there is not an outage.",
)

RETRY_OUTCOMES = ("retried", "budget_exhausted", "gave_up")
BREAKER_TRANSITION_PAIRS = (
    ("closed", "open"),
    ("open", "half-open"),
    ("half-open", "closed"),
    ("half-open", "open"),
)


def start_at_zero(upstreams: dict[str, list[str]], routes: list[str]) -> None:
    """Create every known series at 0, so ``rate()`` and dashboards see the first event
    (a labelled counter is otherwise absent until it first counts)."""
    for upstream, instances in upstreams.items():
        BREAKER_REJECTIONS.labels(upstream)
        RETRY_BUDGET_EXHAUSTED.labels(upstream)
        BULKHEAD_REJECTIONS.labels(upstream)
        for outcome in RETRY_OUTCOMES:
            RETRIES.labels(upstream, outcome)
        for instance in instances:
            for old, new in BREAKER_TRANSITION_PAIRS:
                BREAKER_TRANSITIONS.labels(upstream, instance, old, new)
    for route in routes:
        RATE_LIMITED.labels(route)
        FALLBACKS.labels(route)
