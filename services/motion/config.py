"""The motion planner's configuration: the ``[motion]`` section of servoscope.toml."""

from __future__ import annotations

from dataclasses import dataclass

from servoscope.settings import Settings


@dataclass(frozen=True)
class MotionConfig:
    servo_url: str
    rate_hz: float = 50.0  # setpoints per second streamed to the servo controller
    setpoint_timeout_s: float = 0.2  # per attempt; a setpoint gets at most two attempts
    measure_every: int = 5  # read the measured angle every N setpoints
    channels: int = 6  # from [servo] channel_count: the planner moves what the servo drives
    min_angle: float = 0.0
    max_angle: float = 180.0
    max_duration_s: float = 60.0
    history: int = 1000  # finished moves kept for GET /moves/{id}
    default_max_velocity: float = 60.0  # deg/s, when a move names no duration or limits
    default_max_acceleration: float = 240.0  # deg/s²
    breaker_failures: int = 3  # failed setpoint attempts in a row that open the breaker
    breaker_reset_s: float = 2.0  # then one probe is let through after this long


def load_config(settings: Settings) -> MotionConfig:
    return settings.options(
        "motion",
        MotionConfig,
        servo_url=settings.url("servo"),
        channels=int(settings.get("servo", "channel_count")),
    )
