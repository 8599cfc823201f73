"""device-state: one view of the device, gathered from its neighbours, never failing whole.

``GET /state`` asks the servo controller (status), the motion planner (active moves)
and the telemetry logger (recent samples) in parallel, each with its own timeout and
circuit breaker. A neighbour that fails marks only its section ``unavailable`` — with
the last good data and its age when there is one — and the answer is still 200.

Run it under gunicorn::

    gunicorn -c python:servoscope.gunicorn_conf 'services.state.app:create_app()'
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from flask import Flask, Response, jsonify

from services.state import contract, dependencies, metrics
from services.state.config import load_config
from services.state.sections import Section, SectionGatherer
from servoscope.appfactory import create_app as create_base_app
from servoscope.outbound import UpstreamClient
from servoscope.resilience.breaker import Breaker, BreakerOptions
from servoscope.resilience.sharedstate import SharedState
from servoscope.settings import load

SERVICE_NAME = "device-state"


def create_app() -> Flask:
    settings = load()
    config = load_config(settings)
    app = create_base_app(SERVICE_NAME, settings=settings, operations=contract.operations(config))
    options = BreakerOptions(failures=config.breaker_failures, reset_s=config.breaker_reset_s)
    local = SharedState.local()  # one breaker per dependency in this worker

    def section(name: str, url: str, fetch) -> Section:  # type: ignore[no-untyped-def]
        client = UpstreamClient(name, url)
        breaker = Breaker(name, urlsplit(url).netloc, options, local, metrics.BREAKER)
        return Section(name, lambda: fetch(client), breaker)

    timeout = config.timeout_s
    gatherer = SectionGatherer(
        [
            section("servo", config.servo_url, lambda c: dependencies.servo_status(c, timeout)),
            section("motion", config.motion_url, lambda c: dependencies.active_moves(c, timeout)),
            section(
                "telemetry",
                config.telemetry_url,
                lambda c: dependencies.recent_telemetry(
                    c, timeout, config.recent_telemetry_s, config.recent_telemetry_limit
                ),
            ),
        ],
        timeout,
    )

    @app.get("/state")
    def state() -> Response:
        sections = gatherer.gather()
        for name, answer in sections.items():
            if answer["status"] != "ok":
                metrics.SECTIONS_UNAVAILABLE.labels(name).inc()
        return jsonify(generated_at=time.time(), **sections)

    return app
