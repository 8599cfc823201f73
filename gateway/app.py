"""The API gateway: the only public entry to the stack.

Run it under gunicorn: ``gunicorn -c python:servoscope.gunicorn_conf 'gateway.app:create_app()'``.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, Response, g, request

from gateway.auth import KeyStore, require_scope
from gateway.proxy import forward
from gateway.routing import Operation, Route, load_routes
from servoscope.appfactory import create_app as create_base_app
from servoscope.inbound import current_request_id
from servoscope.outbound import UpstreamClient
from servoscope.settings import load

SERVICE_NAME = "gateway"
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def create_app() -> Flask:
    settings = load()
    keys = KeyStore.from_file(settings.path("gateway", "keys_file"))
    routes = load_routes(settings.path("gateway", "routes_file"), settings)
    app = create_base_app(SERVICE_NAME, settings=settings)
    clients = {
        route.upstream: UpstreamClient(route.upstream, route.upstream_url) for route in routes
    }

    @app.before_request
    def _authenticate() -> None:
        if request.path not in OPEN_PATHS:
            g.api_key = keys.authenticate(request.headers.get("Authorization"))

    for route in routes:
        for op in route.operations:
            app.add_url_rule(
                route.prefix + op.flask_rule_tail,
                endpoint=f"{route.name}:{op.method}:{op.path}",
                view_func=_proxy_view(route, op, clients[route.upstream]),
                methods=[op.method],
            )
    return app


def _proxy_view(route: Route, op: Operation, client: UpstreamClient) -> Callable[..., Response]:
    def view(**_params: str) -> Response:
        require_scope(g.api_key, op.scope)
        upstream_path = request.path[len(route.prefix) :]
        return forward(client, request, upstream_path, current_request_id(), route.timeout_s)

    return view
