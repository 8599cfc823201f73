"""device-state's configuration: the ``[device_state]`` section of servoscope.toml."""

from __future__ import annotations

from dataclasses import dataclass

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


def load_config(settings: Settings) -> StateConfig:
    return settings.options(
        "device_state",
        StateConfig,
        servo_url=settings.url("servo"),
        motion_url=settings.url("motion"),
        telemetry_url=settings.url("telemetry"),
    )
