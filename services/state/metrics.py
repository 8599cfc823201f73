"""device-state's metric families: its breakers, one per dependency, and section outcomes."""

from prometheus_client import Counter, Gauge

from servoscope.resilience.breaker import BreakerMetrics

BREAKER = BreakerMetrics(
    Gauge(
        "device_state_breaker_state",
        "Breaker per dependency: 0 closed, 1 open, 2 half-open.",
        ["upstream", "upstream_instance"],
    ),
    Counter(
        "device_state_breaker_transitions",
        "Breaker state changes per dependency.",
        ["upstream", "upstream_instance", "from_state", "to_state"],
    ),
)
SECTIONS_UNAVAILABLE = Counter(
    "device_state_sections_unavailable",
    "Sections of GET /state answered unavailable, by section.",
    ["section"],
)
