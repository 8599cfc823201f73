"""The motion planner's configuration: the ``[motion]`` section of servoscope.toml, and
the resilience policy of its servo link built from it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from servoscope.resilience.breaker import BreakerOptions
from servoscope.resilience.options import AttemptTimeoutOptions, RetryOptions
from servoscope.settings import Settings

SETPOINT_ATTEMPTS = 2  # a setpoint is tried twice, the second at once


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

    def __post_init__(self) -> None:
        _ = self.retry, self.attempt_timeout, self.breaker  # checked when loaded

    @cached_property
    def retry(self) -> RetryOptions:
        """Two attempts and no wait between them, whatever ``Retry-After`` says: a
        setpoint has one 20 ms slot of the 50 Hz loop, and its Idempotency-Key makes the
        second attempt safe (the servo controller applies a key once)."""
        return RetryOptions(
            max_attempts=SETPOINT_ATTEMPTS,
            backoff_base_s=0.0,
            backoff_max_s=0.0,
            honour_retry_after=False,
        )

    @cached_property
    def attempt_timeout(self) -> AttemptTimeoutOptions:
        return AttemptTimeoutOptions(
            connect_s=self.setpoint_timeout_s, read_s=self.setpoint_timeout_s
        )

    @cached_property
    def breaker(self) -> BreakerOptions:
        return BreakerOptions(failures=self.breaker_failures, reset_s=self.breaker_reset_s)


def load_config(settings: Settings) -> MotionConfig:
    return settings.options(
        "motion",
        MotionConfig,
        servo_url=settings.url("servo"),
        channels=int(settings.get("servo", "channel_count")),
    )
