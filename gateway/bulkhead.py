"""A bulkhead per upstream: at most ``max_concurrent`` calls, a bounded wait for a slot.

A hung upstream fills its own slots and nothing else: further calls to it are refused
with 503 (at once, or after ``max_wait_s``) while the worker keeps serving every other
route. Per worker on purpose: the resource it protects is this process's capacity (its
greenlets under gevent, its threads under gthread).

One API key holds at most ``max_share`` of an upstream's slots (all of them unless the
table says less; the stack's routes.yaml gives each key half of 16): a second client's burst,
admitted by its own rate limit, fills its share and is refused there, while the first
client's requests still find theirs (measured in the traffic-spike experiment: without
the share, a burst under another key took every slot and the first client's device-state
reads got 503 bulkhead-full).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from gateway import metrics
from gateway.policy import BulkheadOptions


class BulkheadFull(Exception):
    def __init__(self, upstream: str, options: BulkheadOptions, *, key_share: bool = False) -> None:
        super().__init__(
            f"this API key already has {options.per_key} calls to {upstream} in flight, "
            "its share of the upstream's slots"
            if key_share
            else f"{upstream} already has {options.max_concurrent} calls in flight "
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
        self._per_key: dict[str, int] = {}
        self._keys_lock = threading.Lock()

    @contextlib.contextmanager
    def _key_share(self, key: str | None) -> Iterator[None]:
        """Count ``key``'s call for as long as it holds (or waits for) a slot."""
        if key is None:
            yield
            return
        with self._keys_lock:
            held = self._per_key.get(key, 0)
            if held >= self.options.per_key:
                raise BulkheadFull(self.upstream, self.options, key_share=True)
            self._per_key[key] = held + 1
        try:
            yield
        finally:
            with self._keys_lock:
                left = self._per_key[key] - 1
                if left:
                    self._per_key[key] = left
                else:
                    del self._per_key[key]

    @contextlib.contextmanager
    def slot(self, wait_s: float | None = None, key: str | None = None) -> Iterator[float]:
        """Hold a slot for the ``with`` block, one of ``key``'s share; raises
        :class:`BulkheadFull`. Yields the wait."""
        with self._key_share(key):
            yield from self._slot(wait_s)

    def _slot(self, wait_s: float | None) -> Iterator[float]:
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
