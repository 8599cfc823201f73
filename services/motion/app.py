"""The motion planner: plans trajectories and streams their setpoints to the servo.

Run it under gunicorn with ONE worker (moves live in the process that streams them)::

    gunicorn -c python:servoscope.gunicorn_conf 'services.motion.app:create_app()'
"""

from __future__ import annotations

from flask import Flask

from services.motion import contract, routes
from services.motion.config import load_config
from services.motion.moves import MoveManager
from services.motion.servo_link import ServoLink
from servoscope import streams
from servoscope.appfactory import create_app as create_base_app
from servoscope.settings import load

SERVICE_NAME = "motion-planner"


def create_app() -> Flask:
    settings = load()
    config = load_config(settings)
    app = create_base_app(SERVICE_NAME, settings=settings, operations=contract.operations(config))
    app.extensions["motion.config"] = config
    events = streams.StreamPublisher(
        streams.redis_url(settings), streams.MOVE_EVENTS, streams.load_options(settings)
    )
    app.extensions["motion.manager"] = MoveManager(
        config,
        ServoLink(config),
        events,
        streams.producer_name(SERVICE_NAME),
    )
    events.start()
    app.register_blueprint(routes.blueprint)
    return app
