"""The telemetry logger's configuration: the ``[telemetry_logger]`` section."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from servoscope.settings import Settings, SettingsError

if TYPE_CHECKING:
    from services.telemetry.store import TelemetryStore

STORES = ("sqlite", "postgres")


@dataclass(frozen=True)
class TelemetryConfig:
    database: Path
    store: str = "sqlite"  # "sqlite": the embedded file; "postgres": a shared server
    postgres_dsn: str = ""  # empty: the stack's own PostgreSQL ([ports] postgres)
    max_batch: int = 1000
    max_age_s: float = 86400.0
    max_rows: int = 1_000_000
    busy_timeout_s: float = 5.0
    retention_period_s: float = 30.0
    monitor_period_s: float = 2.0  # how often the stream backlog and freshness gauges update


def postgres_dsn(settings: Settings) -> str:
    """The stack's own PostgreSQL server, database and role ``servoscope``, over TCP."""
    return f"postgresql://servoscope@{settings.host}:{settings.port('postgres')}/servoscope"


def load_config(settings: Settings) -> TelemetryConfig:
    config = settings.options(
        "telemetry_logger",
        TelemetryConfig,
        database=settings.path("telemetry_logger", "database"),
    )
    if config.store not in STORES:
        raise SettingsError(
            f"{settings.source}: [telemetry_logger] store = {config.store!r}; "
            f"use one of {list(STORES)}"
        )
    if config.store == "postgres" and not config.postgres_dsn:
        config = TelemetryConfig(**{**config.__dict__, "postgres_dsn": postgres_dsn(settings)})
    return config


def open_store(config: TelemetryConfig) -> TelemetryStore:
    """The configured store; psycopg is imported only when PostgreSQL is used."""
    if config.store == "postgres":
        from services.telemetry.postgres_store import PostgresStore

        return PostgresStore(config.postgres_dsn, connect_timeout_s=config.busy_timeout_s)
    from services.telemetry.sqlite_store import SqliteStore

    return SqliteStore(config.database, busy_timeout_s=config.busy_timeout_s)
