"""Servo commands in domain terms (channel, angle) over the managed device.

Every command carries its own speed and acceleration and ends with Get Errors,
all in one write: the reply proves the Maestro received the command (it executes
in order), and its error register tells whether the line lost any of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.servo import protocol
from services.servo.config import ServoConfig
from services.servo.device_errors import LINE_ERRORS, DeviceReportedErrors
from services.servo.lifecycle import ServoDevice
from services.servo.snapshot import Target, channel_json


@dataclass(frozen=True)
class Accepted:
    """A target the device confirmed."""

    channel: int
    angle: float
    pulse_us: float
    speed: int
    acceleration: int

    def as_json(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "angle": self.angle,
            "pulse_us": self.pulse_us,
            "speed": self.speed,
            "acceleration": self.acceleration,
        }


class ServoController:
    def __init__(self, config: ServoConfig, device: ServoDevice) -> None:
        self.config = config
        self.device = device

    def _confirmed(self, command: str, request: bytes, channel: int | None = None) -> None:
        """Send ``request`` followed by Get Errors; raise if the line lost anything."""
        request += self.config.encode(protocol.GetErrors())
        bits = self.device.exchange(command, request, 2, self.device.read_errors, channel=channel)
        if bits & LINE_ERRORS:
            raise DeviceReportedErrors(bits & LINE_ERRORS)

    def set_position(
        self,
        channel: int,
        angle: float,
        speed: int | None = None,
        acceleration: int | None = None,
    ) -> Accepted:
        """Move ``channel`` to ``angle`` (already validated against its calibration)."""
        settings = self.config.channel(channel)
        target = settings.calibration.angle_to_quarter_us(angle)
        speed = settings.speed if speed is None else speed
        acceleration = settings.acceleration if acceleration is None else acceleration
        encode = self.config.encode
        request = (
            encode(protocol.SetSpeed(channel, speed))
            + encode(protocol.SetAcceleration(channel, acceleration))
            + encode(protocol.SetTarget(channel, target))
        )
        self._confirmed("set_target", request, channel)
        self.device.record_target(channel, Target(target, angle))
        return Accepted(channel, angle, target / 4, speed, acceleration)

    def home(self) -> list[dict[str, Any]]:
        """Go Home: every channel to the home position stored in the device."""
        self._confirmed("go_home", self.config.encode(protocol.GoHome()))
        targets = []
        for channel in range(self.config.channel_count):
            settings = self.config.channel(channel)
            angle = settings.home_angle
            quarter_us = settings.calibration.angle_to_quarter_us(angle)
            self.device.record_target(channel, Target(quarter_us, angle))
            targets.append({"channel": channel, "angle": angle, "pulse_us": quarter_us / 4})
        return targets

    def reading(self, channel: int) -> dict[str, Any] | None:
        """The latest sampled state of ``channel``, or None before the first sample."""
        snapshot = self.device.snapshot
        if snapshot is None:
            return None
        return channel_json(
            channel,
            snapshot,
            self.config.calibration_for(channel),
            self.device.target(channel),
            self.device.is_stale(snapshot),
        )

    def status(self) -> dict[str, Any]:
        channels = [self.reading(channel) for channel in range(self.config.channel_count)]
        return {
            **self.device.status_json(),
            "device_errors": self.device.errors.as_json(),
            "channels": [reading for reading in channels if reading is not None],
        }
