"""Per API key and route rate limiting: a token bucket here, ``limits`` in Redis.

Each key gets a bucket of ``requests`` tokens per route, refilled at ``requests /
per_s`` tokens a second. Answers carry the IETF httpapi ratelimit-headers fields::

    RateLimit-Policy: "default";q=100;w=1
    RateLimit: "default";r=37;t=0

Shared (several workers or replicas): ``limits``' sliding-window counter in Redis,
atomic and O(1) per hit; it approximates the same bucket (the previous window's
count is weighed by how much of it still overlaps). Local: a token bucket written
here, because ``limits``' memory storage starts a timer thread every 10 ms to expire
keys; measured, that thread churn cost more than the rest of the pipeline together.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import limits
from limits.storage import RedisStorage
from limits.strategies import SlidingWindowCounterRateLimiter

from gateway.policy import RateLimitOptions
from servoscope.resilience.sharedstate import SharedState

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


class RateLimiter:
    """One limiter for the process; each route brings its own options."""

    def __init__(self, shared: SharedState) -> None:
        self.shared = shared
        self.local = TokenBuckets()
        self.redis = (
            SlidingWindowCounterRateLimiter(
                RedisStorage(shared.url, socket_connect_timeout=0.2, socket_timeout=0.2)
            )
            if shared.enabled
            else None
        )
        self._items: dict[RateLimitOptions, limits.RateLimitItem] = {}

    def check(self, options: RateLimitOptions, route: str, key: str) -> Decision:
        """Take one request from ``key``'s allowance on ``route``."""
        remote = self.redis
        if remote is None:
            return self._local(options, route, key)
        return self.shared.choose(
            lambda _r: self._shared(remote, options, route, key),
            lambda: self._local(options, route, key),
        )

    def _local(self, options: RateLimitOptions, route: str, key: str) -> Decision:
        allowed, remaining, wait = self.local.take(options, route, key)
        return decision(options, allowed, remaining, wait)

    def _shared(
        self,
        limiter: SlidingWindowCounterRateLimiter,
        options: RateLimitOptions,
        route: str,
        key: str,
    ) -> Decision:
        item = self._items.get(options)
        if item is None:
            item = self._items[options] = limits.RateLimitItemPerSecond(
                options.requests, options.per_s
            )
        allowed = limiter.hit(item, route, key)
        reset_at, remaining = limiter.get_window_stats(item, route, key)
        wait = max(0.0, reset_at - time.time()) if remaining <= 0 else 0.0
        return decision(options, allowed, max(0, remaining), wait)


def decision(options: RateLimitOptions, allowed: bool, remaining: int, wait_s: float) -> Decision:
    reset_s = math.ceil(wait_s) if remaining <= 0 else 0
    headers = {
        "RateLimit-Policy": f'"{POLICY_NAME}";q={options.requests};w={options.per_s}',
        "RateLimit": f'"{POLICY_NAME}";r={remaining};t={reset_s}',
    }
    if not allowed:
        headers["Retry-After"] = str(max(1, reset_s))
    return Decision(allowed, remaining, reset_s, headers)
