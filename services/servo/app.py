"""The servo controller: the one process that owns the serial port.

Run it under gunicorn::

    gunicorn -c python:servoscope.gunicorn_conf 'services.servo.app:create_app()'
"""

from __future__ import annotations

from flask import Flask

from services.servo import routes
from services.servo.config import load_config
from services.servo.controller import ServoController
from services.servo.device import DeviceUnavailable, PySerialLink
from servoscope.appfactory import create_app as create_base_app
from servoscope.settings import load

SERVICE_NAME = "servo-controller"


def create_app() -> Flask:
    settings = load()
    config = load_config(settings)
    link = PySerialLink(config.device, config.baud)
    app = create_base_app(
        SERVICE_NAME,
        settings=settings,
        readiness=lambda: (link.is_open or _try_open(link), {"device": config.device}),
    )
    app.extensions["servo.controller"] = ServoController(config, link)
    app.register_blueprint(routes.blueprint)
    return app


def _try_open(link: PySerialLink) -> bool:
    try:
        link.open()
    except DeviceUnavailable:
        return False
    return True
