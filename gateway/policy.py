"""The gateway's own stage options: the rate limit and the balancer's health checks.

The generic stages' options (deadline, bulkhead, retry and its budget, breaker, attempt
timeout) are the core's (:mod:`servoscope.resilience.options`); these two belong to
stages only the gateway has. Both are parsed from the route table like the core's.
"""

from __future__ import annotations

from dataclasses import dataclass

from servoscope.resilience.options import positive


@dataclass(frozen=True)
class RateLimitOptions:
    """Per API key and route: ``requests`` per ``per_s`` seconds (a token bucket)."""

    enabled: bool = True
    requests: int = 100
    per_s: int = 1

    def __post_init__(self) -> None:
        positive(self.requests, "requests")
        positive(self.per_s, "per_s")


@dataclass(frozen=True)
class HealthCheckOptions:
    """Optional active checks: GET ``path`` on every instance each ``interval_s``."""

    enabled: bool = False
    path: str = "/readyz"
    interval_s: float = 2.0
    timeout_s: float = 0.5
