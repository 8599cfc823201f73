"""A bulkhead per upstream: at most ``max_concurrent`` calls, a bounded wait for a slot.

A hung upstream fills its own slots and nothing else: further calls to it are refused
with 503 (at once, or after ``max_wait_s``) while the worker keeps serving every other
route. Per worker on purpose: the resource it protects is this process's capacity (its
greenlets under gevent, its threads under gthread).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from gateway import metrics
from gateway.policy import BulkheadOptions


class BulkheadFull(Exception):
    def __init__(self, upstream: str, options: BulkheadOptions) -> None:
        super().__init__(
            f"{upstream} already has {options.max_concurrent} calls in flight "
            f"(waited {options.max_wait_s}s for a slot)"
        )


class Bulkhead:
    def __init__(self, upstream: str, options: BulkheadOptions) -> None:
        self.upstream = upstream
        self.options = options
        self._slots = threading.BoundedSemaphore(options.max_concurrent)
        self._in_flight = metrics.BULKHEAD_IN_FLIGHT.labels(upstream)
        self._queued = metrics.BULKHEAD_QUEUED.labels(upstream)
        self._in_flight.set(0)
        self._queued.set(0)

    @contextlib.contextmanager
    def slot(self, wait_s: float | None = None) -> Iterator[float]:
        """Hold a slot for the ``with`` block; raises :class:`BulkheadFull`. Yields the wait."""
        wait = self.options.max_wait_s if wait_s is None else min(wait_s, self.options.max_wait_s)
        waited = 0.0
        if not self._slots.acquire(blocking=False):
            if wait <= 0:
                raise BulkheadFull(self.upstream, self.options)
            self._queued.inc()
            started = time.perf_counter()
            try:
                got = self._slots.acquire(timeout=wait)
            finally:
                self._queued.dec()
            if not got:
                raise BulkheadFull(self.upstream, self.options)
            waited = time.perf_counter() - started
        self._in_flight.inc()
        try:
            yield waited
        finally:
            self._in_flight.dec()
            self._slots.release()
