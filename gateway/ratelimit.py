"""Per API key and route rate limiting with the ``limits`` library, in Redis or memory.

``limits`` offers moving-window, fixed-window and sliding-window-counter strategies
but no token bucket; a moving window of ``requests`` per ``per_s`` behaves like a
bucket of that size refilled as old hits age out, and it has atomic Redis storage.
Answers carry the IETF httpapi ratelimit-headers fields::

    RateLimit-Policy: "default";q=100;w=1
    RateLimit: "default";r=37;t=1
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import limits
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import MovingWindowRateLimiter

from gateway.policy import RateLimitOptions
from gateway.sharedstate import SharedState

POLICY_NAME = "default"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: int
    reset_s: int  # whole seconds until the window frees a request
    headers: dict[str, str]


class RateLimiter:
    """One limiter for the process; each route brings its own options."""

    def __init__(self, shared: SharedState) -> None:
        self.shared = shared
        self.local = MovingWindowRateLimiter(MemoryStorage())
        self.redis = (
            MovingWindowRateLimiter(
                RedisStorage(shared.url, socket_connect_timeout=0.2, socket_timeout=0.2)
            )
            if shared.enabled
            else None
        )
        self._items: dict[RateLimitOptions, limits.RateLimitItem] = {}

    def _item(self, options: RateLimitOptions) -> limits.RateLimitItem:
        item = self._items.get(options)
        if item is None:
            item = self._items[options] = limits.RateLimitItemPerSecond(
                options.requests, options.per_s
            )
        return item

    def check(self, options: RateLimitOptions, route: str, key: str) -> Decision:
        """Take one request from ``key``'s window on ``route``."""
        item = self._item(options)

        def run(limiter: MovingWindowRateLimiter) -> Decision:
            allowed = limiter.hit(item, route, key)
            reset_at, remaining = limiter.get_window_stats(item, route, key)
            return self._decision(options, allowed, remaining, reset_at)

        remote = self.redis
        if remote is None:
            return run(self.local)
        return self.shared.choose(lambda _r: run(remote), lambda: run(self.local))

    @staticmethod
    def _decision(
        options: RateLimitOptions, allowed: bool, remaining: int, reset_at: float
    ) -> Decision:
        reset_s = max(1, math.ceil(reset_at - time.time())) if remaining <= 0 else 0
        remaining = max(0, remaining)
        headers = {
            "RateLimit-Policy": f'"{POLICY_NAME}";q={options.requests};w={options.per_s}',
            "RateLimit": f'"{POLICY_NAME}";r={remaining};t={reset_s}',
        }
        if not allowed:
            headers["Retry-After"] = str(max(1, reset_s))
        return Decision(allowed, remaining, reset_s, headers)
