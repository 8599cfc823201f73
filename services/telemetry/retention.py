"""Retention in the background: by age and by row count, on a fixed period."""

from __future__ import annotations

import logging
import threading
import time

from services.telemetry.config import TelemetryConfig
from services.telemetry.metrics import LAST_PRUNE, SAMPLES_PRUNED
from services.telemetry.store import TelemetryStore

log = logging.getLogger(__name__)


def start_retention(store: TelemetryStore, config: TelemetryConfig, period_s: float = 30.0) -> None:
    """Prune now and then every ``period_s`` in a daemon thread (one per worker)."""

    def loop() -> None:
        while True:
            try:
                removed = store.prune(max_age_s=config.max_age_s, max_rows=config.max_rows)
                SAMPLES_PRUNED.inc(removed)
                LAST_PRUNE.set(time.time())
            except Exception:
                # The store is away (a locked file, a PostgreSQL restart): next period.
                log.exception("retention pass failed; retrying next period")
            time.sleep(period_s)

    threading.Thread(target=loop, name="telemetry-retention", daemon=True).start()
