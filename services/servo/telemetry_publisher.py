"""Publishes sampled servo positions and device events to Redis Streams, off the command path.

The sampler thread copies the poller's latest :class:`Snapshot` every ``sample_period_s``
(it reads memory, never the wire) and publishes one entry per powered channel to
``servoscope:samples``; device life-cycle changes (connected, recovered, faulted,
disconnected) go to ``servoscope:device-events``. Publishing only appends to the bounded
buffer of a :class:`servoscope.streams.StreamPublisher`, so nothing a request thread does
ever waits on Redis: a broker outage costs commands nothing, and samples wait in the
buffer (bounded, counted) until it returns.

Each sample carries its producer (this process's life) and a per-channel sequence
number, so a consumer can prove it has every sample: no gap in any channel's ``seq``.
The first sample after a command opens a PRODUCER span in the command's trace; the
channel's later samples carry that span's context until the next command.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from opentelemetry import trace

from services.servo.config import ServoConfig
from services.servo.lifecycle import ServoDevice
from servoscope import streams
from servoscope.streams import StreamOptions, StreamPublisher


@dataclass(frozen=True)
class PublisherOptions:
    """``[servo_telemetry]``; where and how entries are published is ``[streams]``."""

    enabled: bool = True
    sample_period_s: float = 0.1


class TelemetryPublisher:
    def __init__(
        self,
        options: PublisherOptions,
        config: ServoConfig,
        device: ServoDevice,
        redis_url: str,
        stream_options: StreamOptions,
        producer: str,
    ) -> None:
        self.options = options
        self.config = config
        self.device = device
        self.producer = producer
        enabled = options.enabled and stream_options.enabled
        stream_options = StreamOptions(**{**stream_options.__dict__, "enabled": enabled})
        self.samples = StreamPublisher(redis_url, streams.SAMPLES, stream_options)
        self.events = StreamPublisher(redis_url, streams.DEVICE_EVENTS, stream_options)
        self._seq: dict[int, int] = {}
        self._event_seq = 0
        self._causes: dict[int, tuple[object, str]] = {}  # channel -> (command span, traceparent)
        self._stop = threading.Event()
        device.listeners.append(self.device_event)

    def start(self) -> None:
        if not (self.options.enabled and self.samples.options.enabled):
            return
        self.samples.start()
        self.events.start()
        threading.Thread(target=self._sample_loop, name="telemetry-sampler", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self.samples.stop()
        self.events.stop()

    def device_event(self, event: str, reason: str | None) -> None:
        self._event_seq += 1
        self.events.publish(
            {
                "producer": self.producer,
                "seq": self._event_seq,
                "kind": event,
                "subject": self.config.device,
                "ts": time.time(),
                "detail": {"reason": reason} if reason else {},
            },
            parent=trace.set_span_in_context(trace.INVALID_SPAN),  # its own trace
        )

    def _traceparent(self, channel: int, cause: trace.SpanContext | None) -> tuple[bool, str]:
        """(open a producer span now, the traceparent to carry otherwise)."""
        if cause is None:
            return False, ""
        known = self._causes.get(channel)
        if known is not None and known[0] == cause:
            return False, known[1]
        return True, ""

    def sample_once(self, last_sampled: float | None) -> float | None:
        """Publish one sample per powered channel from the newest snapshot, once each."""
        snapshot = self.device.snapshot
        if snapshot is None or snapshot.sampled_at == last_sampled:
            return last_sampled
        for channel, position in enumerate(snapshot.positions):
            if not position:
                continue  # pulses off: no angle to report
            angle = self.config.calibration_for(channel).quarter_us_to_angle(position)
            target = self.device.target(channel)
            seq = self._seq.get(channel, 0)
            self._seq[channel] = seq + 1
            cause = target.cause if target else None
            traced, traceparent = self._traceparent(channel, cause)
            sent = self.samples.publish(
                {
                    "producer": self.producer,
                    "seq": seq,
                    "channel": channel,
                    "angle": round(angle, 3),
                    "target_angle": round(target.angle if target else angle, 3),
                    "ts": snapshot.sampled_at,
                },
                traced=traced,
                parent=trace.set_span_in_context(trace.NonRecordingSpan(cause)) if cause else None,
                traceparent=traceparent,
            )
            if traced and cause is not None:
                self._causes[channel] = (cause, sent)
        return snapshot.sampled_at

    def _sample_loop(self) -> None:
        last: float | None = None
        while not self._stop.wait(self.options.sample_period_s):
            last = self.sample_once(last)
