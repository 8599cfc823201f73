"""A bulkhead per upstream: at most ``max_concurrent`` calls, a bounded wait for a slot.

The bulkhead stage takes a slot once per call (outside the retries, so retries cannot
multiply a sick upstream's share of threads) and refuses with :class:`BulkheadFull`.

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
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

from servoscope.outbound import Reply
from servoscope.resilience.options import BulkheadOptions
from servoscope.resilience.pipeline import Call, Next


@dataclass(frozen=True)
class BulkheadMetrics:
    """The families a bulkhead reports to, labelled ``(upstream)``: calls holding a slot,
    calls waiting for one, and calls refused."""

    in_flight: Gauge
    queued: Gauge
    rejections: Counter


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
    def __init__(self, upstream: str, options: BulkheadOptions, metrics: BulkheadMetrics) -> None:
        self.upstream = upstream
        self.options = options
        self._slots = threading.BoundedSemaphore(options.max_concurrent)
        self._in_flight = metrics.in_flight.labels(upstream)
        self._queued = metrics.queued.labels(upstream)
        self.rejections = metrics.rejections.labels(upstream)
        self._in_flight.set(0)
        self._queued.set(0)
        self._per_key: dict[str, int] = {}
        self._keys_lock = threading.Lock()

    def acquire(self, wait_s: float | None = None, key: str | None = None) -> float:
        """Take a slot, one of ``key``'s share; returns the seconds waited, or raises
        :class:`BulkheadFull`. Every successful call is paired with :meth:`release`.

        Plain methods rather than nested context managers: this runs on every proxied
        request, and each generator-based ``with`` layer cost measurable CPU there."""
        if key is not None:
            self._take_share(key)
        try:
            return self._take_slot(wait_s)
        except BaseException:
            if key is not None:
                self._give_share(key)
            raise

    def release(self, key: str | None = None) -> None:
        self._in_flight.dec()
        self._slots.release()
        if key is not None:
            self._give_share(key)

    @contextlib.contextmanager
    def slot(self, wait_s: float | None = None, key: str | None = None) -> Iterator[float]:
        """:meth:`acquire` and :meth:`release` around a ``with`` block; yields the wait."""
        waited = self.acquire(wait_s, key)
        try:
            yield waited
        finally:
            self.release(key)

    def _take_share(self, key: str) -> None:
        with self._keys_lock:
            held = self._per_key.get(key, 0)
            if held >= self.options.per_key:
                raise BulkheadFull(self.upstream, self.options, key_share=True)
            self._per_key[key] = held + 1

    def _give_share(self, key: str) -> None:
        with self._keys_lock:
            left = self._per_key[key] - 1
            if left:
                self._per_key[key] = left
            else:
                del self._per_key[key]

    def _take_slot(self, wait_s: float | None) -> float:
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
        return waited


@dataclass(frozen=True)
class BulkheadStage:
    """Holds one slot of ``bulkhead`` (and of the caller's share) around the rest."""

    bulkhead: Bulkhead
    prefix: str  # of span attributes and events: ``<prefix>.bulkhead.wait_ms``
    name: str = "bulkhead"

    def __call__(self, call: Call, rest: Next) -> Reply:
        bulkhead = self.bulkhead
        if not bulkhead.options.enabled:
            return rest(call)
        key = call.caller()
        wait = None if call.deadline is None else call.deadline.remaining()
        try:
            waited = bulkhead.acquire(wait, key)
        except BulkheadFull:
            bulkhead.rejections.inc()
            call.span.add_event(f"{self.prefix}.bulkhead_rejected")
            raise
        if waited:
            call.span.set_attribute(f"{self.prefix}.bulkhead.wait_ms", round(waited * 1000, 3))
        try:
            return rest(call)
        finally:
            bulkhead.release(key)
