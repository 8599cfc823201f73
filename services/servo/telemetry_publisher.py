"""Publishes sampled servo positions to the telemetry logger, off the command path.

Two daemon threads, and nothing a request thread ever waits on:

- the sampler copies the poller's latest :class:`Snapshot` into a bounded queue every
  ``sample_period_s`` (it reads memory, never the wire);
- the sender posts batches to the telemetry logger's ``POST /samples``, one request
  at a time (its own bulkhead of one), with a timeout and an ``Idempotency-Key`` per
  batch, so a batch retried after a lost answer is stored once.

When the logger is slow or down the queue fills; then the oldest samples are dropped
and counted in ``servo_telemetry_samples_dropped_total`` — never silently lost, and
never at the cost of a servo command. A failed batch goes back to the front of the
queue and is retried with the same key.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import deque
from dataclasses import dataclass

import urllib3
from prometheus_client import Counter, Gauge

from services.servo.config import ServoConfig
from services.servo.lifecycle import ServoDevice

log = logging.getLogger(__name__)

PUBLISHED = Counter(
    "servo_telemetry_samples_published", "Samples the telemetry logger acknowledged (202)."
)
DROPPED = Counter(
    "servo_telemetry_samples_dropped", "Samples dropped because the publish queue was full."
)
FAILURES = Counter("servo_telemetry_publish_failures", "Batches the telemetry logger did not take.")
QUEUED = Gauge("servo_telemetry_queue_depth", "Samples waiting to be published.")


@dataclass(frozen=True)
class PublisherOptions:
    url: str  # the telemetry logger's base URL
    enabled: bool = True
    sample_period_s: float = 0.1
    flush_period_s: float = 0.5
    batch_max: int = 500
    queue_max: int = 5000
    timeout_s: float = 0.5


class TelemetryPublisher:
    def __init__(self, options: PublisherOptions, config: ServoConfig, device: ServoDevice) -> None:
        self.options = options
        self.config = config
        self.device = device
        self._queue: deque[dict] = deque()
        self._retry: tuple[str, list[dict]] | None = None  # a failed batch and its key
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # Background work, not request work: plain pooled HTTP, no spans (like the poller).
        self._pool = urllib3.connection_from_url(options.url, maxsize=1, retries=False)

    def start(self) -> None:
        if not self.options.enabled:
            return
        for target, name in ((self._sample_loop, "sampler"), (self._send_loop, "sender")):
            threading.Thread(target=target, name=f"telemetry-{name}", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _enqueue(self, samples: list[dict]) -> None:
        with self._lock:
            self._queue.extend(samples)
            overflow = len(self._queue) - self.options.queue_max
            for _ in range(max(0, overflow)):
                self._queue.popleft()
            QUEUED.set(len(self._queue))
        if overflow > 0:
            DROPPED.inc(overflow)

    def sample_once(self, last_sampled: float | None) -> float | None:
        """Queue one sample per powered channel from the newest snapshot, once each."""
        snapshot = self.device.snapshot
        if snapshot is None or snapshot.sampled_at == last_sampled:
            return last_sampled
        samples = []
        for channel, position in enumerate(snapshot.positions):
            if not position:
                continue  # pulses off: no angle to report
            angle = self.config.calibration_for(channel).quarter_us_to_angle(position)
            target = self.device.target(channel)
            samples.append(
                {
                    "channel": channel,
                    "angle": round(angle, 3),
                    "target_angle": round(target.angle if target else angle, 3),
                    "ts": snapshot.sampled_at,
                }
            )
        self._enqueue(samples)
        return snapshot.sampled_at

    def _sample_loop(self) -> None:
        last: float | None = None
        while not self._stop.wait(self.options.sample_period_s):
            last = self.sample_once(last)

    def _next_batch(self) -> tuple[str, list[dict]] | None:
        if self._retry is not None:
            return self._retry
        with self._lock:
            count = min(len(self._queue), self.options.batch_max)
            batch = [self._queue.popleft() for _ in range(count)]
            QUEUED.set(len(self._queue))
        return (uuid.uuid4().hex, batch) if batch else None

    def flush_once(self) -> bool:
        """Send one batch; True when the logger took it (or there was nothing to send)."""
        pending = self._next_batch()
        if pending is None:
            return True
        key, batch = pending
        try:
            reply = self._pool.request(
                "POST",
                "/samples",
                body=json.dumps(batch).encode(),
                headers={"Content-Type": "application/json", "Idempotency-Key": key},
                timeout=urllib3.Timeout(total=self.options.timeout_s),
            )
            ok = reply.status == 202
            reason = f"answered {reply.status}"
        except urllib3.exceptions.HTTPError as exc:
            ok, reason = False, type(exc).__name__
        if ok:
            PUBLISHED.inc(len(batch))
            self._retry = None
            return True
        FAILURES.inc()
        refused = reason.startswith("answered 4")
        if refused:
            # The logger refused the batch itself: retrying cannot help; count it dropped.
            DROPPED.inc(len(batch))
            self._retry = None
        else:
            self._retry = (key, batch)
        log.warning("telemetry batch of %d samples not published: %s", len(batch), reason)
        return False

    def _send_loop(self) -> None:
        while not self._stop.wait(self.options.flush_period_s):
            while self.flush_once() and self._pending():
                pass  # drain a backlog in whole batches while the logger keeps up

    def _pending(self) -> bool:
        with self._lock:
            return bool(self._queue)
