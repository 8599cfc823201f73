"""Where breakers, rate-limit windows and retry budgets live: Redis, or this process.

With one worker everything is in-process. With several workers (or replicas) the
stages keep their state in Redis so they all see one breaker and one bucket. Redis
may go away: every shared operation goes through :meth:`SharedState.choose`, which
falls back to the local copy at once, sets its ``up_gauge`` to 0 (the gateway's
``gateway_shared_state_up``), logs
it once, and tries Redis again at most every ``recheck_s``.

    shared = SharedState.connect("redis://127.0.0.1:6379/0")
    count = shared.choose(lambda r: r.incr("k"), lambda: local.incr("k"))
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import redis
from prometheus_client import Gauge

log = logging.getLogger("servoscope.resilience.sharedstate")
T = TypeVar("T")


class SharedState:
    """A Redis client with a health flag; ``client is None`` means local-only by config."""

    def __init__(
        self,
        client: redis.Redis | None,
        url: str = "",
        recheck_s: float = 1.0,
        up_gauge: Gauge | None = None,
    ) -> None:
        self.client = client
        self.url = url
        self.recheck_s = recheck_s
        self.up_gauge = up_gauge  # 1 while Redis is in use, 0 on local state
        self._up = client is not None
        self._next_check = 0.0
        self._lock = threading.Lock()
        self._report(self._up)

    def _report(self, up: bool) -> None:
        if self.up_gauge is not None:
            self.up_gauge.set(1 if up else 0)

    @classmethod
    def local(cls, up_gauge: Gauge | None = None) -> SharedState:
        return cls(None, up_gauge=up_gauge)

    @classmethod
    def connect(cls, url: str, up_gauge: Gauge | None = None) -> SharedState:
        # Short timeouts: a missing Redis must cost a request milliseconds, not seconds.
        client = redis.Redis.from_url(
            url, socket_connect_timeout=0.2, socket_timeout=0.2, health_check_interval=0
        )
        shared = cls(client, url, up_gauge=up_gauge)
        try:
            client.ping()
        except redis.RedisError as exc:
            shared.mark_down(exc)
        return shared

    @property
    def enabled(self) -> bool:
        return self.client is not None

    @property
    def up(self) -> bool:
        """True when Redis is in use now; re-probes a lost Redis at most every ``recheck_s``."""
        if self._up or self.client is None:
            return self._up
        now = time.monotonic()
        if now < self._next_check:
            return False
        with self._lock:
            if self._up or now < self._next_check:
                return self._up
            self._next_check = now + self.recheck_s
            try:
                self.client.ping()
            except redis.RedisError:
                return False
            self._up = True
        self._report(True)
        log.warning("redis is back: sharing state again", extra={"redis": self.url})
        return True

    def mark_down(self, exc: Exception) -> None:
        with self._lock:
            was_up = self._up
            self._up = False
            self._next_check = time.monotonic() + self.recheck_s
        self._report(False)
        if was_up:
            log.warning(
                "redis unavailable: serving on this worker's local state (%s)",
                type(exc).__name__,
                extra={"redis": self.url, "error": str(exc)},
            )

    def choose(self, shared: Callable[[redis.Redis], T], local: Callable[[], T]) -> T:
        """Run ``shared`` against Redis while it is up, else (or on any Redis error) ``local``."""
        if self.client is not None and self.up:
            try:
                return shared(self.client)
            except redis.RedisError as exc:
                self.mark_down(exc)
        return local()

    def write(
        self,
        shared: Sequence[Callable[[redis.client.Pipeline], object]],
        local: Sequence[Callable[[], object]] = (),
    ) -> None:
        """Send ``shared`` (each queues its commands) in one pipeline, one round trip;
        when Redis is away or local by config, run ``local`` instead."""
        if not shared and not local:
            return

        def send(r: redis.Redis) -> None:
            pipe = r.pipeline(transaction=False)
            for queue in shared:
                queue(pipe)
            pipe.execute()

        def instead() -> None:
            for apply in local:
                apply()

        self.choose(send if shared else lambda r: None, instead)
