"""Proxied operations served straight from WSGI, beside Flask rather than through it.

Measured (bench/bench_gateway.py notes): Flask's per-request dispatch (request context,
URL adapter, before/after hooks, response conversion) was a sizeable share of the
gateway's CPU per proxied request. Operations with a fixed path (all but those with
``{params}``) are looked up in a dict here and run through the same authentication,
scope check and :class:`~gateway.pipeline.Pipeline` as the Flask views; everything else
(path parameters, admin, OpenAPI, health, metrics, 404/405) falls through to Flask.
The inbound observer still wraps both, so spans, metrics and access logs are the same.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import trace
from werkzeug.wrappers import Request

from gateway.auth import KeyStore, require_scope
from gateway.pipeline import Call, Pipeline
from gateway.routing import Operation, Route, RouteTable
from servoscope.inbound import REQUEST_ID_KEY, ROUTE_KEY
from servoscope.problems import Problem, problem_response

log = logging.getLogger("gateway.fastpath")
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ProxyDispatcher:
    def __init__(
        self, fallthrough: WSGIApp, pipeline: Pipeline, keys: KeyStore, table: RouteTable
    ) -> None:
        self.fallthrough = fallthrough
        self.pipeline = pipeline
        self.keys = keys
        self.exact: dict[tuple[str, str], tuple[Route, Operation]] = {
            (op.method, route.prefix + op.path): (route, op)
            for route in table.routes
            for op in route.operations
            if "{" not in op.path
        }

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        path = environ.get("PATH_INFO", "")
        found = self.exact.get((environ.get("REQUEST_METHOD", ""), path))
        if found is None:
            return self.fallthrough(environ, start_response)
        route, op = found
        environ[ROUTE_KEY] = path
        try:
            key = self.keys.authenticate(environ.get("HTTP_AUTHORIZATION"))
            require_scope(key, op.scope)
            response = self.pipeline.handle(
                Call(
                    route=route,
                    operation=op,
                    request=Request(environ),
                    key_name=key.name,
                    request_id=environ.get(REQUEST_ID_KEY, ""),
                    span=trace.get_current_span(),
                )
            )
        except Problem as problem:
            response = problem_response(problem, path)
        except Exception:
            log.exception("unhandled error on %s %s", op.method, path)
            response = problem_response(
                Problem(
                    500,
                    "Internal Server Error",
                    "the gateway hit an unexpected error; the trace id identifies it in the logs",
                ),
                path,
            )
        return response(environ, start_response)
