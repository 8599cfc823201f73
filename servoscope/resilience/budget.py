"""A retry budget per upstream: retries may add at most ``ratio`` of its requests.

Envoy's idea: over a sliding window of ``window_s`` seconds, retries are allowed while
``retries < max(floor, ratio * requests)``, so a sick upstream sees at most ~20 % extra
load instead of a retry storm, and a quiet one can still retry a few times. Counted in
one-second buckets, in Redis when shared (all workers spend one budget) or locally.
tenacity has no notion of a budget, hence this small module.

A request is counted when the rate limit lets it in: in shared state inside the
request's one script (:mod:`gateway.sharedtrip`, with :meth:`RetryBudget.request_key`),
else by :meth:`RetryBudget.record_request`. One that then ends without an attempt
(refused as malformed, by the deadline, the bulkhead or an open breaker) is taken back
(:meth:`RetryBudget.forget_request`), so only requests sent upstream earn retries: a
flood refused by an open breaker must not buy a retry storm for when it closes.
"""

from __future__ import annotations

import threading

import redis

from servoscope.resilience.clock import SYSTEM_CLOCK, Clock
from servoscope.resilience.options import RetryBudgetOptions
from servoscope.resilience.sharedstate import SharedState


class RetryBudget:
    def __init__(
        self,
        upstream: str,
        options: RetryBudgetOptions,
        shared: SharedState,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.upstream = upstream
        self.options = options
        self.shared = shared
        self.clock = clock  # wall clock: workers sharing the budget in Redis agree on seconds
        self._key = f"gw:budget:{upstream}"
        self._buckets: dict[int, list[int]] = {}  # second -> [requests, retries]
        self._lock = threading.Lock()

    # -- local ---------------------------------------------------------------

    def _local_add(self, index: int, now: int, by: int = 1) -> None:
        with self._lock:
            bucket = self._buckets.get(now)
            if bucket is None:
                horizon = now - self.options.window_s
                self._buckets = {s: b for s, b in self._buckets.items() if s > horizon}
                bucket = self._buckets[now] = [0, 0]
            bucket[index] += by

    def _local_totals(self, now: int) -> tuple[int, int]:
        horizon = now - self.options.window_s
        with self._lock:
            live = [b for s, b in self._buckets.items() if s > horizon]
        return sum(b[0] for b in live), sum(b[1] for b in live)

    # -- redis ---------------------------------------------------------------

    def _counter(self, kind: str, second: int) -> str:
        """The Redis key of ``second``'s ``req`` or ``retry`` count."""
        return f"{self._key}:{kind}:{second}"

    def _ttl_s(self) -> int:
        return self.options.window_s + 1  # a second's count outlives its window, no more

    def _redis_add(self, pipe: redis.client.Pipeline, kind: str, now: int, by: int = 1) -> None:
        key = self._counter(kind, now)
        pipe.incrby(key, by)
        pipe.expire(key, self._ttl_s())

    def _redis_totals(self, r: redis.Redis, now: int) -> tuple[int, int]:
        seconds = range(now - self.options.window_s + 1, now + 1)
        keys = [self._counter(kind, s) for kind in ("req", "retry") for s in seconds]
        values = [int(v or 0) for v in r.mget(keys)]
        half = len(seconds)
        return sum(values[:half]), sum(values[half:])

    # -- the budget ----------------------------------------------------------

    def second(self) -> int:
        """The second a request is counted in (the wall clock's, shared by workers)."""
        return int(self.clock.time())

    def request_key(self, second: int) -> tuple[str, int]:
        """The Redis counter of ``second``'s requests and its time to live: what the
        request's script increments instead of :meth:`record_request`."""
        return self._counter("req", second), self._ttl_s()

    def record_request(self, second: int, by: int = 1) -> None:
        """Count one request (not attempt) for the upstream in ``second``."""
        self.shared.write(
            [lambda pipe: self._redis_add(pipe, "req", second, by)],
            [lambda: self._local_add(0, second, by)],
        )

    def forget_request(self, second: int) -> None:
        """Take back a request counted in ``second`` that was never sent upstream."""
        self.record_request(second, by=-1)

    def totals(self) -> tuple[int, int]:
        now = int(self.clock.time())
        return self.shared.choose(
            lambda r: self._redis_totals(r, now), lambda: self._local_totals(now)
        )

    def try_spend(self) -> bool:
        """Take one retry from the budget; False when it is spent (or disabled: always True)."""
        if not self.options.enabled:
            return True
        # Check, then count: two workers may both take the last retry, so a shared budget
        # can overshoot by the number of workers, never more; a Lua script is not worth it.
        requests, retries = self.totals()
        if retries >= max(self.options.floor, int(self.options.ratio * requests)):
            return False
        now = int(self.clock.time())
        self.shared.write(
            [lambda pipe: self._redis_add(pipe, "retry", now)], [lambda: self._local_add(1, now)]
        )
        return True
