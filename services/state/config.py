"""device-state's configuration: the ``[device_state]`` section of servoscope.toml, and
the resilience policy of each section built from it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from servoscope.resilience.breaker import BreakerOptions
from servoscope.resilience.options import AttemptTimeoutOptions, DeadlineOptions
from servoscope.settings import Settings


@dataclass(frozen=True)
class StateConfig:
    servo_url: str
    motion_url: str
    telemetry_url: str
    timeout_s: float = 0.5  # per section: /state never waits longer than this
    recent_telemetry_s: float = 5.0  # "recent" samples: this many seconds back
    recent_telemetry_limit: int = 100
    breaker_failures: int = 3  # consecutive failures that open a section's breaker
    breaker_reset_s: float = 5.0

    def __post_init__(self) -> None:
        _ = self.deadline, self.attempt_timeout, self.breaker  # checked when loaded

    @cached_property
    def deadline(self) -> DeadlineOptions:
        """A section's one attempt ends within ``timeout_s`` of its start, connecting
        included, so its outcome is counted before /state answers."""
        return DeadlineOptions(total_s=self.timeout_s)

    @cached_property
    def attempt_timeout(self) -> AttemptTimeoutOptions:
        return AttemptTimeoutOptions(connect_s=self.timeout_s, read_s=self.timeout_s)

    @cached_property
    def breaker(self) -> BreakerOptions:
        return BreakerOptions(failures=self.breaker_failures, reset_s=self.breaker_reset_s)


def load_config(settings: Settings) -> StateConfig:
    return settings.options(
        "device_state",
        StateConfig,
        servo_url=settings.url("servo"),
        motion_url=settings.url("motion"),
        telemetry_url=settings.url("telemetry"),
    )
