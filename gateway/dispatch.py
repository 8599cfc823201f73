"""The one way in for every proxied operation: authenticate, find the operation, check
its scope, run the pipeline.

Every operation of the route table, with a fixed path or a templated one, is served
here, straight from WSGI: fixed paths are looked up in a dict (the common case, one
lookup), templated ones (``/moves/{id}``) in a Werkzeug map of the same rules. A path
under no operation falls through to the Flask app (admin, OpenAPI, problem types,
health, metrics, and the 404s), which authenticates its own routes. The inbound
observer wraps both, so spans, metrics and access logs are the same either way.

Why not Flask views: measured (bench/bench_gateway.py notes), Flask's per-request
dispatch (request context, URL adapter, before/after hooks, response conversion) was a
sizeable share of the gateway's CPU per proxied request. For the same reason the
pipeline reads the request through :class:`gateway.proxy.ProxiedRequest`, a view of the
environ, rather than werkzeug's ``Request``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from flask import Response
from opentelemetry import trace
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, RequestRedirect, Rule

from gateway.auth import KeyStore, require_scope
from gateway.pipeline import Call, Pipeline
from gateway.proxy import ProxiedRequest
from gateway.routing import Operation, Route, RouteTable
from servoscope.inbound import REQUEST_ID_KEY, ROUTE_KEY
from servoscope.problems import Problem, from_http_exception, problem_response

log = logging.getLogger("gateway.dispatch")
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ProxyDispatcher:
    """The gateway's WSGI entry: proxied operations here, anything else to ``fallthrough``."""

    def __init__(
        self, fallthrough: WSGIApp, pipeline: Pipeline, keys: KeyStore, table: RouteTable
    ) -> None:
        self.fallthrough = fallthrough
        self.pipeline = pipeline
        self.keys = keys
        self.operations: dict[str, tuple[Route, Operation]] = {}
        self.labels: dict[str, str] = {}  # endpoint -> route label
        rules = []
        for route in table.routes:
            for op in route.operations:
                # The rule's text is the route label in spans and metrics.
                rule = route.prefix + op.flask_rule_tail
                endpoint = f"{op.method} {rule}"
                self.operations[endpoint] = (route, op)
                self.labels[endpoint] = rule
                rules.append(Rule(rule, endpoint=endpoint, methods=[op.method]))
        self.exact = {
            (op.method, route.prefix + op.path): endpoint
            for endpoint, (route, op) in self.operations.items()
            if "{" not in op.path
        }
        # merge_slashes off: `/a//b` is a 404 like any path the table lacks, not a redirect.
        self.templates = Map(rules, merge_slashes=False)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "")
        params: dict[str, str] = {}
        refused: MethodNotAllowed | None = None
        endpoint = self.exact.get((method, path))
        if endpoint is None:
            try:
                endpoint, params = self.templates.bind_to_environ(environ).match()
            except (NotFound, RequestRedirect):  # Flask answers both, as for any path
                return self.fallthrough(environ, start_response)
            except MethodNotAllowed as exc:
                refused = exc
        if refused is None:  # the route label, refusals by the key included
            environ[ROUTE_KEY] = self.labels[endpoint]
        try:
            key = self.keys.authenticate(environ.get("HTTP_AUTHORIZATION"))  # stage 1
            if refused is not None:
                response = self._method_refused(refused, method, path)
            else:
                route, op = self.operations[endpoint]
                require_scope(key, op.scope)
                response = self.pipeline.handle(
                    Call(
                        route=route,
                        operation=op,
                        request=ProxiedRequest(environ),
                        key_name=key.name,
                        request_id=environ.get(REQUEST_ID_KEY, ""),
                        span=trace.get_current_span(),
                        params=params,
                    )
                )
        except Problem as problem:
            response = problem_response(problem, path)
        except Exception:
            log.exception("unhandled error on %s %s", method, path)
            response = problem_response(
                Problem(
                    500,
                    "Internal Server Error",
                    "the gateway hit an unexpected error; the trace id identifies it in the logs",
                ),
                path,
            )
        return response(environ, start_response)

    @staticmethod
    def _method_refused(refused: MethodNotAllowed, method: str, path: str) -> Response:
        allowed = {*(refused.valid_methods or ()), "OPTIONS"}
        if method == "OPTIONS":  # what Flask answers for a rule: the methods it allows
            options = Response()
            options.allow.update(allowed)
            return options
        refused.valid_methods = sorted(allowed)
        return problem_response(from_http_exception(refused), path)
