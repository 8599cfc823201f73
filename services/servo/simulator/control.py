"""The simulator's control API (HTTP/JSON, on a daemon thread): its state, the targets
each channel was set to, and the fault switches (see :mod:`services.servo.simulator`).

A Flask app from the services' own app factory (:func:`servoscope.appfactory.create_app`,
as ``maestro-simulator``): the same problem+json errors and strict JSON bodies as every
service, plus ``/healthz``, ``/metrics`` and spans of its requests. It is served by
Werkzeug's threaded server inside the simulator's process, beside the device's IO thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.serving import make_server

from servoscope.appfactory import create_app
from servoscope.jsonbody import json_object
from servoscope.problems import Problem, from_http_exception, problem_response

if TYPE_CHECKING:
    from services.servo.simulator.maestro import Simulator

SERVICE_NAME = "maestro-simulator"
MAX_CONTROL_BODY = 64 * 1024
RESOURCES = "/state, /targets/<channel>, /faults or /faults/<mode>"


def control_app(simulator: Simulator) -> Flask:
    """The control API of ``simulator`` as a Flask app."""
    app = create_app(SERVICE_NAME, max_body_bytes=MAX_CONTROL_BODY)

    @app.get("/state")
    def state() -> Response:
        return jsonify(simulator.snapshot())

    @app.get("/targets/<int:channel>")
    def targets(channel: int) -> Response:
        return jsonify(channel=channel, targets=simulator.targets(channel))

    @app.get("/faults")
    def faults() -> Response:
        return jsonify(faults=simulator.snapshot()["faults"])

    @app.put("/faults/<mode>")
    def set_fault(mode: str) -> Response:
        params = _params()
        return _change_faults(lambda: simulator.set_fault(mode, **params))

    @app.delete("/faults/<mode>")
    def clear_fault(mode: str) -> Response:
        return _change_faults(lambda: simulator.clear_fault(mode))

    @app.delete("/faults")
    def clear_faults() -> Response:
        return _change_faults(lambda: simulator.clear_fault(None))

    # The shared 404 and 405, with a detail that says what this API has.
    @app.errorhandler(NotFound)
    def not_found(exc: NotFound) -> Response:
        detail = f"no such resource {request.path}; use {RESOURCES}"
        return problem_response(Problem(404, "Not Found", detail, slug="not-found"))

    @app.errorhandler(MethodNotAllowed)
    def not_allowed(exc: MethodNotAllowed) -> Response:
        problem = from_http_exception(exc)
        usable = sorted(set(exc.valid_methods or ()) - {"HEAD", "OPTIONS"})
        problem.detail = (
            f"{request.method} is not supported on {request.path}; use {' or '.join(usable)}"
        )
        return problem_response(problem)

    return app


def _params() -> dict[str, Any]:
    """The fault's parameters: a JSON object body, or no body at all."""
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    return json_object() if request.content_length or chunked else {}


def _change_faults(change: Callable[[], dict[str, Any]]) -> Response:
    """The faults after ``change``, or the problem with the fault it refused."""
    try:
        return jsonify(faults=change())
    except ValueError as exc:
        raise Problem(400, "Invalid Fault", str(exc), slug="invalid-fault") from None


class ControlServer:
    """:func:`control_app` served on ``host:port`` (0: an ephemeral port) by a thread."""

    def __init__(self, simulator: Simulator, host: str, port: int) -> None:
        # Requests are logged once, as JSON, by the app's inbound observer.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = make_server(host, port, control_app(simulator), threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="maestro-control", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self._server.host}:{self._server.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
