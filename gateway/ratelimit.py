"""Per API key and route rate limiting: a token bucket, in this process or in Redis.

Each key gets a bucket of ``requests`` tokens per route, refilled at ``requests /
per_s`` tokens a second. Answers carry the IETF httpapi ratelimit-headers fields::

    RateLimit-Policy: "default";q=100;w=1
    RateLimit: "default";r=37;t=0

Local: :class:`TokenBuckets`, written here (``limits``' memory storage starts a timer
thread every 10 ms to expire keys; measured, that thread churn cost more than the rest
of the pipeline together). Shared (several workers or replicas): the same bucket in a
Redis hash, taken by the Lua script of :mod:`gateway.sharedtrip`, which does the
request's other shared reads in the same round trip.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from gateway.policy import RateLimitOptions

POLICY_NAME = "default"
MAX_BUCKETS = 100_000  # bounded memory: full buckets are dropped first


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: int
    reset_s: int  # whole seconds until a request is allowed again (0: now)
    headers: dict[str, str]


class TokenBuckets:
    """In-process token buckets, one per (route, key)."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str], list[float]] = {}  # -> [tokens, updated]
        self._lock = threading.Lock()

    def take(self, options: RateLimitOptions, route: str, key: str) -> tuple[bool, int, float]:
        """(allowed, tokens left, seconds until the next token)."""
        capacity = float(options.requests)
        rate = capacity / options.per_s
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get((route, key))
            if bucket is None:
                if len(self._buckets) >= MAX_BUCKETS:
                    self._buckets.clear()
                bucket = self._buckets[(route, key)] = [capacity, now]
            tokens = min(capacity, bucket[0] + (now - bucket[1]) * rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            bucket[0], bucket[1] = tokens, now
        wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / rate
        return allowed, int(tokens), wait


def decision(options: RateLimitOptions, allowed: bool, remaining: int, wait_s: float) -> Decision:
    reset_s = math.ceil(wait_s) if remaining <= 0 else 0
    headers = {
        "RateLimit-Policy": f'"{POLICY_NAME}";q={options.requests};w={options.per_s}',
        "RateLimit": f'"{POLICY_NAME}";r={remaining};t={reset_s}',
    }
    if not allowed:
        headers["Retry-After"] = str(max(1, reset_s))
    return Decision(allowed, remaining, reset_s, headers)
