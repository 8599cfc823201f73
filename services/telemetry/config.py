"""The telemetry logger's configuration: the ``[telemetry_logger]`` section."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from servoscope.settings import Settings


@dataclass(frozen=True)
class TelemetryConfig:
    database: Path
    max_batch: int = 1000
    max_age_s: float = 86400.0
    max_rows: int = 1_000_000
    busy_timeout_s: float = 5.0
    retention_period_s: float = 30.0


def load_config(settings: Settings) -> TelemetryConfig:
    return settings.options(
        "telemetry_logger",
        TelemetryConfig,
        database=settings.path("telemetry_logger", "database"),
    )
