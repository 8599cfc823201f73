"""A Flask app with the stack's contracts already in place.

Every service starts from :func:`create_app`: JSON logs, tracing, problem+json
errors, request observation, ``/healthz``, ``/readyz`` and ``/metrics``::

    app = create_app("servo-controller", readiness=lambda: (device.active, {"state": ...}))
    app.register_blueprint(routes.blueprint)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, Response, jsonify, request

from servoscope import contract, inbound, metrics, problems
from servoscope.inbound import WSGIApp
from servoscope.jsonlog import setup_logging
from servoscope.problems import Problem
from servoscope.settings import Settings, load
from servoscope.telemetry import VERSION, setup_tracing

Readiness = Callable[[], tuple[bool, dict[str, Any]]]

DEFAULT_MAX_BODY = 64 * 1024


def create_app(
    service: str,
    *,
    settings: Settings | None = None,
    readiness: Readiness | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    operations: list[contract.Operation] | None = None,
    entry: Callable[[WSGIApp], WSGIApp] | None = None,
) -> Flask:
    """Build the Flask app for ``service`` (its OpenTelemetry ``service.name``).

    ``operations`` is the service's contract; ``GET /openapi.json`` describes them, and
    any route the app serves beyond them (:func:`servoscope.contract.undeclared`).
    ``entry``, given Flask's own dispatch, returns the WSGI app that receives every
    request inside the inbound observer (the gateway's proxy dispatcher, which passes
    what it does not serve on to Flask)."""
    settings = settings or load()
    setup_logging(service)
    setup_tracing(service, settings)

    app = Flask(service)
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    problems.install(app)
    if entry is not None:
        app.wsgi_app = entry(app.wsgi_app)  # type: ignore[method-assign]
    inbound.install(app)

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok", service=service)

    @app.get("/readyz")
    def readyz() -> Response:
        ready, details = readiness() if readiness else (True, {})
        if not ready:
            raise Problem(
                503,
                "Not Ready",
                f"{service} cannot do its job right now",
                headers={"Retry-After": "1"},
                **details,
            )
        return jsonify(status="ready", service=service, **details)

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        payload, content_type = metrics.exposition(request.headers.get("Accept"))
        return Response(payload, content_type=content_type)

    if operations is not None:

        @app.get("/openapi.json")
        def openapi_json() -> Response:
            return jsonify(service_document(app, service, operations))

    return app


OWN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})


def service_document(app: Flask, service: str, operations: list[contract.Operation]):
    """The contract's operations, and every other rule the app serves (undeclared)."""
    declared = {op.key for op in operations}
    extra = [
        contract.undeclared(method, contract.flask_template(rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.rule not in OWN_PATHS
        and not rule.rule.startswith(problems.TYPE_BASE)
        and rule.endpoint != "static"
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        if (method, contract.flask_template(rule.rule)) not in declared
    ]
    return contract.service_document(service, VERSION, [*operations, *extra])
