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
from services.state.config import StateConfig, load_config
from services.state.sections import Section, SectionGatherer
from servoscope.appfactory import create_app as create_base_app
from servoscope.outbound import UpstreamClient
from servoscope.resilience.attempt import (
    AttemptTimeoutStage,
    BreakerStage,
    Client,
    OneTarget,
    TransportStage,
)
from servoscope.resilience.breaker import Breaker
from servoscope.resilience.clock import SYSTEM_CLOCK, Clock
from servoscope.resilience.deadline import DeadlineStage
from servoscope.resilience.pipeline import Pipeline
from servoscope.resilience.sharedstate import SharedState
from servoscope.settings import load

SERVICE_NAME = "device-state"


def section_pipeline(
    name: str,
    url: str,
    config: StateConfig,
    client: Client | None = None,  # a scripted one in unit tests
    clock: Clock = SYSTEM_CLOCK,
) -> Pipeline:
    """One neighbour's pipeline: deadline → breaker → attempt timeout → transport, with
    a breaker of its own in this worker."""
    breaker = Breaker(
        name,
        urlsplit(url).netloc,
        config.breaker,
        SharedState.local(),
        metrics.BREAKER,
        clock=clock,
    )
    return Pipeline(
        [
            DeadlineStage(config.deadline, clock),
            BreakerStage(OneTarget(client or UpstreamClient(name, url), breaker)),
            AttemptTimeoutStage(config.attempt_timeout),
            TransportStage(name),
        ]
    )


def create_app() -> Flask:
    settings = load()
    config = load_config(settings)
    app = create_base_app(SERVICE_NAME, settings=settings, operations=contract.operations(config))
    get = {
        name: dependencies.get_json(section_pipeline(name, url, config), name)
        for name, url in (
            ("servo", config.servo_url),
            ("motion", config.motion_url),
            ("telemetry", config.telemetry_url),
        )
    }
    gatherer = SectionGatherer(
        [
            Section("servo", lambda: dependencies.servo_status(get["servo"])),
            Section("motion", lambda: dependencies.active_moves(get["motion"])),
            Section(
                "telemetry",
                lambda: dependencies.recent_telemetry(
                    get["telemetry"], config.recent_telemetry_s, config.recent_telemetry_limit
                ),
            ),
        ],
        config.timeout_s,
    )

    @app.get("/state")
    def state() -> Response:
        sections = gatherer.gather()
        for name, answer in sections.items():
            if answer["status"] != "ok":
                metrics.SECTIONS_UNAVAILABLE.labels(name).inc()
        return jsonify(generated_at=time.time(), **sections)

    return app
