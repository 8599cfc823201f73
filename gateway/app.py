"""The API gateway: the only public entry to the stack.

Run it under gunicorn: ``gunicorn -c python:servoscope.gunicorn_conf 'gateway.app:create_app()'``.
Each worker builds its app from ``routes.yaml`` when it boots, so ``kill -HUP`` on the
gunicorn master reloads the route table without dropping in-flight requests.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from flask import Flask, Response, g, jsonify, request
from opentelemetry import trace

from gateway import admin, metrics, openapi
from gateway import contracts as gateway_contracts
from gateway.auth import KeyStore, require_scope
from gateway.fastpath import ProxyDispatcher
from gateway.pipeline import Call, Pipeline
from gateway.proxy import Answer
from gateway.routing import Operation, Route, load_routes
from servoscope.appfactory import create_app as create_base_app
from servoscope.inbound import current_request_id
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
    keys = KeyStore.from_file(settings.path("gateway", "keys_file"))
    table = load_routes(settings.path("gateway", "routes_file"), settings)
    probers = probe_networks(settings)
    largest_body = max(route.max_body_bytes for route in table.routes)
    app = create_base_app(SERVICE_NAME, settings=settings, max_body_bytes=largest_body)
    # `/a//b` is a 404 like any path the table lacks, not a redirect to a path the
    # client did not ask for.
    app.url_map.merge_slashes = False
    contracts = gateway_contracts.load(table, settings)
    pipeline = Pipeline(table, shared_state(settings), contracts)
    metrics.start_at_zero(
        {name: [i.id for i in upstream.instances] for name, upstream in table.upstreams.items()},
        [route.name for route in table.routes],
    )
    app.extensions["gateway.pipeline"] = pipeline

    @app.before_request
    def _authenticate() -> None:  # stage 1 of the pipeline
        path = request.path
        if (
            path in ALWAYS_OPEN
            or path.startswith(TYPE_BASE)
            or (path in PROBE_PATHS and is_from(request.remote_addr, probers))
        ):
            return
        g.api_key = keys.authenticate(request.headers.get("Authorization"))

    for route in table.routes:
        for op in route.operations:
            app.add_url_rule(
                route.prefix + op.flask_rule_tail,
                endpoint=f"{route.name}:{op.method}:{op.path}",
                view_func=_proxy_view(pipeline, route, op),
                methods=[op.method],
            )
    app.register_blueprint(admin.blueprint(pipeline))

    @app.get("/openapi.json")
    def openapi_json() -> Response:
        return jsonify(openapi.document(table, contracts))

    # Fixed-path operations skip Flask's dispatch (measured: see gateway/fastpath.py); the
    # inbound observer installed by the app factory stays outermost.
    observer = app.wsgi_app
    observer.app = ProxyDispatcher(observer.app, pipeline, keys, table)  # type: ignore[attr-defined]
    return app


def _proxy_view(pipeline: Pipeline, route: Route, op: Operation) -> Callable[..., Answer]:
    def view(**params: str) -> Answer:
        require_scope(g.api_key, op.scope)
        return pipeline.handle(
            Call(
                route=route,
                operation=op,
                request=request,
                key_name=g.api_key.name,
                request_id=current_request_id(),
                span=trace.get_current_span(),
                params=params,
            )
        )

    return view
