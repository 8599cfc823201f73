"""The telemetry logger: ingests sample batches into SQLite and serves them back.

Run it under gunicorn::

    gunicorn -c python:servoscope.gunicorn_conf 'services.telemetry.app:create_app()'
"""

from __future__ import annotations

from flask import Flask

from services.telemetry import contract, routes
from services.telemetry.config import load_config
from services.telemetry.retention import start_retention
from services.telemetry.store import SampleStore
from servoscope.appfactory import create_app as create_base_app
from servoscope.settings import load

SERVICE_NAME = "telemetry-logger"
MAX_BODY_BYTES = 512 * 1024  # 1000 samples of about 100 bytes, with room to spare


def create_app() -> Flask:
    settings = load()
    config = load_config(settings)
    store = SampleStore(config.database, busy_timeout_s=config.busy_timeout_s)
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
    return app
