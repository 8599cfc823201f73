"""Servo commands in domain terms (channel, angle) over the serial seam.

Every exchange is one ``serial`` span carrying the command, channel, bytes out/in
and device latency, so a slow command in Jaeger shows whether the wire was slow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.servo import protocol
from services.servo.config import ServoConfig
from services.servo.device import DeviceTimeout, DeviceUnavailable, SerialLink

tracer = trace.get_tracer("services.servo.controller")


@dataclass(frozen=True)
class Position:
    channel: int
    angle: float
    pulse_us: float


class ServoController:
    def __init__(self, config: ServoConfig, link: SerialLink) -> None:
        self.config = config
        self.link = link

    def _exchange(self, command: str, channel: int, request: bytes, reply_length: int) -> bytes:
        with tracer.start_as_current_span(
            f"serial {command}",
            kind=SpanKind.CLIENT,
            attributes={
                "servo.command": command,
                "servo.channel": channel,
                "serial.device": self.config.device,
                "serial.bytes_out": len(request),
            },
        ) as span:
            started = time.perf_counter()
            try:
                reply = self.link.exchange(request, reply_length, self.config.timeout_s)
            except (DeviceUnavailable, DeviceTimeout) as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                span.set_attribute("error.type", type(exc).__name__)
                raise
            finally:
                span.set_attribute("serial.latency_ms", (time.perf_counter() - started) * 1000)
            span.set_attribute("serial.bytes_in", len(reply))
            return reply

    def set_position(self, channel: int, angle: float) -> Position:
        calibration = self.config.calibration_for(channel)
        target = calibration.angle_to_quarter_us(angle)
        self._exchange("set_target", channel, protocol.encode_set_target(channel, target), 0)
        return Position(channel, angle, target / 4)

    def current_position(self, channel: int) -> Position:
        request = protocol.encode_get_position(channel)
        reply = self._exchange("get_position", channel, request, 2)
        quarter_us = protocol.decode_position(reply)
        angle = self.config.calibration_for(channel).quarter_us_to_angle(quarter_us)
        return Position(channel, angle, quarter_us / 4)
