"""The servo controller's configuration: ``[servo]`` of servoscope.toml plus ``SERVO_PORT``.

``SERVO_PORT`` names the serial device, e.g. ``/dev/ttyACM0`` for a real Pololu
Maestro, or any pyserial URL (``rfc2217://host:2217`` for a Maestro behind ser2net or
the simulator in another container); the local stack points it at the simulator's pty
link. Channels are set up by ``[servo.channel_defaults]``, overridden per channel by
``[servo.channels.N]``::

    [servo.channel_defaults]
    min_us = 1000.0          # pulse width at min_angle
    max_us = 2000.0          # pulse width at max_angle
    min_angle = 0.0
    max_angle = 180.0        # min_angle > max_angle describes a reversed servo
    speed = 20               # limit, 0.25 us / 10 ms (0 = unlimited); applied on connect
    acceleration = 0         # limit, 0.25 us / 10 ms / 80 ms, 0..255 (0 = unlimited)
    home_angle = 90.0        # where the device's own home setting sends the servo

    [servo.channels.3]
    min_angle = 180.0        # this one is mounted the other way round
    max_angle = 0.0
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from services.servo import protocol
from services.servo.calibration import Calibration
from servoscope.settings import Settings, SettingsError

MAX_SPEED = 0x3FFF
MAX_ACCELERATION = 255
CHANNEL_KEYS = ("min_us", "max_us", "min_angle", "max_angle", "speed", "acceleration", "home_angle")


@dataclass(frozen=True)
class ChannelSettings:
    """One channel: its calibration, its speed and acceleration limits, its home."""

    calibration: Calibration = field(default_factory=Calibration)
    speed: int = 0
    acceleration: int = 0
    home_angle: float = 90.0

    def __post_init__(self) -> None:
        if not 0 <= self.speed <= MAX_SPEED:
            raise ValueError(f"speed must be an integer in 0..{MAX_SPEED}, got {self.speed}")
        if not 0 <= self.acceleration <= MAX_ACCELERATION:
            raise ValueError(
                f"acceleration must be an integer in 0..{MAX_ACCELERATION}, got {self.acceleration}"
            )
        if not self.calibration.contains_angle(self.home_angle):
            raise ValueError(
                f"home_angle {self.home_angle} is outside the calibrated range "
                f"{self.calibration.min_angle}..{self.calibration.max_angle}"
            )

    @property
    def angle_range(self) -> tuple[float, float]:
        """(lowest, highest) angle, whichever way round the servo is mounted."""
        low, high = sorted((self.calibration.min_angle, self.calibration.max_angle))
        return low, high

    @property
    def speed_range(self) -> tuple[int, int]:
        """Speeds a request may ask for: up to the limit; 0 (unlimited) only without one."""
        return (1, self.speed) if self.speed else (0, MAX_SPEED)

    @property
    def acceleration_range(self) -> tuple[int, int]:
        return (1, self.acceleration) if self.acceleration else (0, MAX_ACCELERATION)


@dataclass(frozen=True)
class ServoConfig:
    device: str
    baud: int = 115200
    timeout_s: float = 0.25
    channel_count: int = 6
    device_number: int | None = None  # None: compact protocol; else the Pololu form
    crc: bool = False
    poll_period_s: float = 0.05
    stale_after_s: float = 0.5
    fault_after_failures: int = 3
    reconnect_min_s: float = 0.1
    reconnect_max_s: float = 2.0
    idempotency_window_s: float = 300.0
    channels: dict[int, ChannelSettings] = field(default_factory=dict)
    default_channel: ChannelSettings = field(default_factory=ChannelSettings)

    def channel(self, channel: int) -> ChannelSettings:
        return self.channels.get(channel, self.default_channel)

    def calibration_for(self, channel: int) -> Calibration:
        return self.channel(channel).calibration

    def encode(self, command: protocol.MaestroCommand) -> bytes:
        """The bytes of ``command`` in the configured form (compact or Pololu, CRC or not)."""
        return protocol.encode(command, device=self.device_number, crc=self.crc)


def _channel_settings(values: dict[str, Any], where: str) -> ChannelSettings:
    unknown = sorted(set(values) - set(CHANNEL_KEYS))
    if unknown:
        raise SettingsError(
            f"{where}: unknown key {unknown[0]!r}; channel keys are {', '.join(CHANNEL_KEYS)}"
        )
    try:
        calibration = Calibration(
            **{k: float(values[k]) for k in ("min_us", "max_us", "min_angle", "max_angle")}
        )
        return ChannelSettings(
            calibration=calibration,
            speed=int(values["speed"]),
            acceleration=int(values["acceleration"]),
            home_angle=float(values["home_angle"]),
        )
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{where}: {exc}. Fix the value there.") from None


def load_config(settings: Settings, *, device_needed: bool = True) -> ServoConfig:
    """Read ``[servo]``; a bad value is a SettingsError naming the file, the key and the fix.
    ``device_needed=False``: the channels only (the gateway describing the servo's API)."""
    device = os.environ.get("SERVO_PORT") or str(settings.get("servo", "device"))
    if not device and device_needed:
        raise SettingsError(
            "no serial device configured: set SERVO_PORT (e.g. SERVO_PORT=/dev/ttyACM0 for a "
            "real Maestro) or [servo] device in servoscope.toml; `make up` sets it to the "
            "simulator's pty."
        )
    servo = settings.sections["servo"]
    source = settings.source
    if int(servo.get("workers", 1)) != 1:
        raise SettingsError(
            f"{source}: [servo] workers must be 1: the serial port is opened exclusively, so a "
            "second worker could never use it. Raise [servo] threads for concurrency instead."
        )
    count = int(servo.get("channel_count", 6))
    if not 1 <= count <= protocol.MAX_CHANNELS:
        raise SettingsError(
            f"{source}: [servo] channel_count must be in 1..{protocol.MAX_CHANNELS}, got {count}"
        )
    defaults = {**_BUILTIN_DEFAULTS, **servo.get("channel_defaults", {})}
    default_channel = _channel_settings(defaults, f"{source}: [servo.channel_defaults]")
    channels: dict[int, ChannelSettings] = {}
    for key, values in servo.get("channels", {}).items():
        where = f"{source}: [servo.channels.{key}]"
        if not str(key).isdigit() or not 0 <= int(key) < count:
            raise SettingsError(f"{where}: channel must be a number in 0..{count - 1}")
        channels[int(key)] = _channel_settings({**defaults, **values}, where)
    device_number = int(servo.get("device_number", -1))
    if not -1 <= device_number <= 127:
        raise SettingsError(
            f"{source}: [servo] device_number must be -1 (compact protocol) or 0..127 "
            f"(Pololu protocol), got {device_number}"
        )
    return ServoConfig(
        device=device,
        baud=int(settings.get("servo", "baud")),
        timeout_s=_positive(settings, "timeout_s", 0.25),
        channel_count=count,
        device_number=None if device_number < 0 else device_number,
        crc=bool(servo.get("crc", False)),
        poll_period_s=_positive(settings, "poll_period_s", 0.05),
        stale_after_s=_positive(settings, "stale_after_s", 0.5),
        fault_after_failures=int(servo.get("fault_after_failures", 3)),
        reconnect_max_s=_positive(settings, "reconnect_max_s", 2.0),
        idempotency_window_s=_positive(settings, "idempotency_window_s", 300.0),
        channels=channels,
        default_channel=default_channel,
    )


_BUILTIN_DEFAULTS: dict[str, Any] = {
    "min_us": 1000.0,
    "max_us": 2000.0,
    "min_angle": 0.0,
    "max_angle": 180.0,
    "speed": 0,
    "acceleration": 0,
    "home_angle": 90.0,
}


def _positive(settings: Settings, key: str, default: float) -> float:
    value = float(settings.sections["servo"].get(key, default))
    if not value > 0:
        raise SettingsError(f"{settings.source}: [servo] {key} must be > 0, got {value}")
    return value
