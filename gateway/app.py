"""The API gateway: the only public entry to the stack.

Run it under gunicorn: ``gunicorn -c python:servoscope.gunicorn_conf 'gateway.app:create_app()'``.
Each worker builds its app from ``routes.yaml`` when it boots, so ``kill -HUP`` on the
gunicorn master reloads the route table without dropping in-flight requests.
"""

from __future__ import annotations

import ipaddress

from flask import Flask, Response, g, jsonify, request

from gateway import admin, metrics, openapi
from gateway import contracts as gateway_contracts
from gateway.auth import KeyStore
from gateway.dispatch import ProxyDispatcher
from gateway.pipeline import Pipeline
from gateway.routing import load_routes
from servoscope.appfactory import create_app as create_base_app
from servoscope.jsonlog import setup_logging
from servoscope.problems import TYPE_BASE
from servoscope.resilience.sharedstate import SharedState
from servoscope.settings import Settings, SettingsError, load

SERVICE_NAME = "gateway"
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
ALWAYS_OPEN = frozenset({"/openapi.json"})


def shared_state(settings: Settings) -> SharedState:
    """Redis when the gateway runs more than one worker (or is told to), else local state."""
    mode = str(settings.sections.get("gateway", {}).get("shared_state", "auto"))
    workers = int(settings.sections.get("gateway", {}).get("workers", 1))
    shared = mode == "redis" or (mode == "auto" and workers > 1)
    metrics.SHARED_STATE_CONFIGURED.set(1 if shared else 0)
    if shared:
        return SharedState.connect(
            f"redis://{settings.address('redis')}/0", up_gauge=metrics.SHARED_STATE_UP
        )
    return SharedState.local(up_gauge=metrics.SHARED_STATE_UP)


def probe_networks(settings: Settings) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Where /healthz, /readyz and /metrics answer without a key: ``[gateway] probes_from``.

    Loopback on one machine; in Kubernetes the kubelet and Prometheus come from the
    cluster's node and pod addresses, which the chart lets through.
    """
    raw = settings.sections.get("gateway", {}).get("probes_from", ["127.0.0.0/8", "::1/128"])
    try:
        return [ipaddress.ip_network(cidr) for cidr in raw]
    except ValueError as exc:
        raise SettingsError(
            f"{settings.source}: [gateway] probes_from: {exc}; list networks like 127.0.0.0/8"
        ) from None


def is_from(address: str | None, networks: list) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in network for network in networks if network.version == ip.version)


def create_app() -> Flask:
    settings = load()
    setup_logging(SERVICE_NAME)  # first: building the pipeline may already log (Redis down)
    keys = KeyStore.from_file(settings.path("gateway", "keys_file"))
    table = load_routes(settings.path("gateway", "routes_file"), settings)
    probers = probe_networks(settings)
    contracts = gateway_contracts.load(table, settings)
    pipeline = Pipeline(table, shared_state(settings), contracts)
    largest_body = max(route.max_body_bytes for route in table.routes)
    app = create_base_app(
        SERVICE_NAME,
        settings=settings,
        max_body_bytes=largest_body,
        # Every proxied operation goes through the dispatcher (authentication first, then
        # the pipeline); what it does not serve falls through to the Flask routes below.
        entry=lambda flask_dispatch: ProxyDispatcher(flask_dispatch, pipeline, keys, table),
    )
    # `/a//b` is a 404 like any path the table lacks, not a redirect to a path the
    # client did not ask for.
    app.url_map.merge_slashes = False
    metrics.start_at_zero(
        {name: [i.id for i in upstream.instances] for name, upstream in table.upstreams.items()},
        [route.name for route in table.routes],
    )
    app.extensions["gateway.pipeline"] = pipeline

    @app.before_request
    def _authenticate() -> None:  # the gateway's own routes: admin, and 404s
        path = request.path
        if (
            path in ALWAYS_OPEN
            or path.startswith(TYPE_BASE)
            or (path in PROBE_PATHS and is_from(request.remote_addr, probers))
        ):
            return
        g.api_key = keys.authenticate(request.headers.get("Authorization"))

    app.register_blueprint(admin.blueprint(pipeline))

    @app.get("/openapi.json")
    def openapi_json() -> Response:
        return jsonify(openapi.document(table, contracts))

    return app
