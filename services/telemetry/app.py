"""The telemetry logger: consumes the sample and event streams into its store, takes
sample batches over HTTP too, and serves both back.

Run it under gunicorn::

    gunicorn -c python:servoscope.gunicorn_conf 'services.telemetry.app:create_app()'

Each worker is one consumer of the streams' group (:mod:`services.telemetry.ingest`).
"""

from __future__ import annotations

import math

from flask import Flask

from services.telemetry import contract, metrics, routes
from services.telemetry.config import load_config, open_store
from services.telemetry.ingest import Ingest
from services.telemetry.retention import start_retention
from servoscope import streams
from servoscope.appfactory import create_app as create_base_app
from servoscope.settings import load

SERVICE_NAME = "telemetry-logger"
MAX_BODY_BYTES = 512 * 1024  # 1000 samples of about 100 bytes, with room to spare


def create_app() -> Flask:
    settings = load()
    config = load_config(settings)
    store = open_store(config)
    app = create_base_app(
        SERVICE_NAME,
        settings=settings,
        max_body_bytes=MAX_BODY_BYTES,
        operations=contract.operations(config),
    )
    app.extensions["telemetry.store"] = store
    app.extensions["telemetry.config"] = config
    app.register_blueprint(routes.blueprint)
    start_retention(store, config, config.retention_period_s)
    metrics.FRESHNESS.set(math.nan)  # unknown until a sample is stored
    ingest = Ingest(store, streams.redis_url(settings), streams.load_options(settings))
    app.extensions["telemetry.ingest"] = ingest
    ingest.start(config.monitor_period_s)
    return app
