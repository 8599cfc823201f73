"""The logger's side of the async path: consume the streams into the store.

Each logger worker is one consumer of the group: it reads samples and device and move
events, stores a batch in one transaction (rows keyed on their entry ids) and only then
acknowledges it (:class:`servoscope.streams.StreamConsumer`). A monitor thread turns the
group's backlog and the newest stored sample into gauges.

An entry that is not a valid sample or event is counted, logged and acknowledged without
being stored: retrying it could never succeed, and it must not hold up the stream.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis

from services.telemetry import metrics
from services.telemetry.samples import sample_from
from services.telemetry.store import StreamEvent, StreamSample, TelemetryStore
from servoscope import streams
from servoscope.problems import Problem
from servoscope.streams import Entry, StreamConsumer, StreamOptions

log = logging.getLogger(__name__)

EVENT_KINDS = {
    streams.DEVICE_EVENTS: {"connected", "disconnected", "faulted", "recovered"},
    streams.MOVE_EVENTS: {"accepted", "started", "done", "failed", "cancelled"},
}


def _text(data: dict[str, Any], name: str, limit: int = 200) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise ValueError(f"{name} must be a string of 1 to {limit} characters")
    return value


def _seq(data: dict[str, Any]) -> int:
    seq = data.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise ValueError("seq must be a non-negative integer")
    return seq


def _stream_sample(entry: Entry) -> StreamSample:
    data = entry.data
    seq = _seq(data)
    fields = {k: data.get(k) for k in ("channel", "angle", "target_angle", "ts")}
    return StreamSample(entry.id, sample_from(fields), _text(data, "producer"), seq)


def _stream_event(entry: Entry) -> StreamEvent:
    data = entry.data
    kind = _text(data, "kind", 32)
    if kind not in EVENT_KINDS[entry.stream]:
        raise ValueError(f"kind {kind!r} is not one of {sorted(EVENT_KINDS[entry.stream])}")
    channel = data.get("channel")
    if channel is not None and not isinstance(channel, int):
        raise ValueError("channel must be an integer or absent")
    ts = data.get("ts")
    if not isinstance(ts, int | float):
        raise ValueError("ts must be a number")
    detail = data.get("detail") or {}
    if not isinstance(detail, dict):
        raise ValueError("detail must be an object")
    trace_id = entry.traceparent.split("-")[1] if entry.traceparent.count("-") == 3 else None
    return StreamEvent(
        entry.id,
        entry.stream,
        kind,
        _text(data, "subject"),
        channel,
        float(ts),
        detail,
        trace_id,
        _text(data, "producer"),
        _seq(data),
    )


class Ingest:
    """Stream entries into ``store``: the consumer's handler and the backlog monitor."""

    def __init__(self, store: TelemetryStore, url: str, options: StreamOptions) -> None:
        self.store = store
        self.options = options
        self.consumer = StreamConsumer(
            url, [streams.SAMPLES, *streams.EVENT_STREAMS], options, self.handle, metrics.STREAM
        )
        self._stop = threading.Event()

    def handle(self, stream: str, entries: Sequence[Entry]) -> None:
        samples: list[StreamSample] = []
        events: list[StreamEvent] = []
        for entry in entries:
            try:
                if stream == streams.SAMPLES:
                    samples.append(_stream_sample(entry))
                else:
                    events.append(_stream_event(entry))
            except (ValueError, Problem) as exc:
                metrics.ENTRIES_REJECTED.labels(stream).inc()
                detail = exc.detail if isinstance(exc, Problem) else str(exc)
                log.warning("entry %s of %s not stored: %s", entry.id, stream, detail)
        added = self.store.append_entries(samples, events)
        if samples:
            metrics.SAMPLES_STORED.inc(min(added, len(samples)))

    def start(self, monitor_period_s: float) -> None:
        if not self.options.enabled:
            return
        self.consumer.start()
        threading.Thread(
            target=self._monitor, args=(monitor_period_s,), name="stream-monitor", daemon=True
        ).start()

    def monitor_once(self) -> None:
        for stream in [streams.SAMPLES, *streams.EVENT_STREAMS]:
            backlog = streams.backlog(self.consumer.client, stream)
            metrics.STREAM_LAG.labels(stream).set(backlog.lag)
            metrics.STREAM_PENDING.labels(stream).set(backlog.pending)
            metrics.STREAM_OLDEST.labels(stream).set(backlog.oldest_age_s)
            metrics.STREAM_TRIMMED.labels(stream).set(backlog.trimmed_unconsumed)
        newest = self.store.newest_ts()
        if newest is not None:
            metrics.FRESHNESS.set(max(0.0, time.time() - newest))

    def _monitor(self, period_s: float) -> None:
        while not self._stop.wait(period_s):
            try:
                self.monitor_once()
            except redis.RedisError as exc:
                log.debug("stream monitor: %s", exc)
            except Exception:
                log.exception("stream monitor failed; retrying next period")

    def stop(self) -> None:
        self._stop.set()
        self.consumer.stop()
