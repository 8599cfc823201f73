"""The servo controller: the one process that owns the serial port.

Run it under gunicorn with one worker (the port is exclusive) and threads::

    gunicorn -c python:servoscope.gunicorn_conf 'services.servo.app:create_app()'

The device thread (connect, poll, reconnect) starts with the app, in the worker.
"""

from __future__ import annotations

from flask import Flask

from services.servo import contract, routes
from services.servo.config import ServoConfig, load_config
from services.servo.controller import ServoController
from services.servo.device import PySerialLink, SerialLink
from services.servo.idempotency import IdempotencyCache
from services.servo.lifecycle import ServoDevice
from services.servo.telemetry_publisher import PublisherOptions, TelemetryPublisher
from servoscope import streams
from servoscope.appfactory import create_app as create_base_app
from servoscope.settings import load

SERVICE_NAME = "servo-controller"
MAX_BODY_BYTES = 4096  # a command is a few dozen bytes


def create_app(config: ServoConfig | None = None, link: SerialLink | None = None) -> Flask:
    """Build the app and start its device thread; ``config``/``link`` default to the
    settings file and pyserial. Stop the thread with ``app.extensions["servo.device"].stop()``.
    """
    settings = load()
    config = config or load_config(settings)
    device = ServoDevice(config, link or PySerialLink(config.device, config.baud))
    app = create_base_app(
        SERVICE_NAME,
        settings=settings,
        readiness=lambda: (device.active, {"device": config.device, "state": device.state.value}),
        max_body_bytes=MAX_BODY_BYTES,
        operations=contract.operations(config),
    )
    app.extensions["servo.device"] = device
    app.extensions["servo.controller"] = ServoController(config, device)
    app.extensions["servo.idempotency"] = IdempotencyCache(config.idempotency_window_s)
    app.register_blueprint(routes.blueprint)
    publisher = TelemetryPublisher(
        settings.options("servo_telemetry", PublisherOptions),
        config,
        device,
        streams.redis_url(settings),
        streams.load_options(settings),
        streams.producer_name(SERVICE_NAME),
    )
    app.extensions["servo.telemetry_publisher"] = publisher
    device.start()
    publisher.start()
    return app
