"""What happens to every inbound request, in every process: one WSGI middleware.

It extracts the W3C trace context, opens the HTTP server span, accepts or mints
``X-Request-ID``, returns both ids to the caller, records
``http_server_request_duration_seconds`` with the trace id as exemplar, and writes
one JSON access-log line. Health and metrics endpoints are measured but not traced
or logged, so scrapes don't bury real traffic in Jaeger.

The span ends when the app returns its response object; bodies here are small and
already rendered, so that is when the work is done.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, request
from opentelemetry import context, propagate, trace
from opentelemetry.propagators.textmap import Getter, TextMapPropagator
from opentelemetry.trace import SpanKind, Status, StatusCode

from servoscope import metrics
from servoscope.jsonlog import log_access

QUIET_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})
REQUEST_ID_HEADER = "X-Request-ID"
TRACE_ID_HEADER = "X-Trace-Id"
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
ROUTE_KEY = "servoscope.route"
REQUEST_ID_KEY = "servoscope.request_id"

tracer = trace.get_tracer("servoscope.inbound")
NO_PARENT = context.Context()

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _EnvironGetter(Getter[dict[str, Any]]):
    def get(self, carrier: dict[str, Any], key: str) -> list[str] | None:
        value = carrier.get("HTTP_" + key.upper().replace("-", "_"))
        return [value] if value is not None else None

    def keys(self, carrier: dict[str, Any]) -> list[str]:
        return [k[5:].lower().replace("_", "-") for k in carrier if k.startswith("HTTP_")]


_getter = _EnvironGetter()
# The propagator in force and the environ keys of the fields it reads.
_propagation: tuple[TextMapPropagator | None, frozenset[str]] = (None, frozenset())


def parent_context(environ: dict[str, Any]) -> context.Context:
    """The caller's trace context, or none when the request carries no field the
    propagator reads (most requests: then the propagators are not run at all)."""
    global _propagation
    propagator, keys = _propagation
    current = propagate.get_global_textmap()
    if propagator is not current:
        keys = frozenset("HTTP_" + f.upper().replace("-", "_") for f in current.fields)
        _propagation = (current, keys)
    if keys.isdisjoint(environ):
        return NO_PARENT
    return propagate.extract(environ, getter=_getter)


def request_id(environ: dict[str, Any]) -> str:
    """The caller's ``X-Request-ID`` when it is sane, else a fresh one (32 hex digits)."""
    given = environ.get("HTTP_X_REQUEST_ID")
    if given and _REQUEST_ID_OK.match(given):
        return given
    return os.urandom(16).hex()


# A refused body is read and dropped, up to this much, before the answer goes out: a
# server that closes a socket with input still unread resets the connection, and the
# client, still sending, then sees a broken pipe instead of the 413 naming its mistake.
DRAIN_MAX_BYTES = 8 * 1024 * 1024


def drain_refused_body(environ: dict[str, Any]) -> None:
    """Read what is left of a refused request's body (declared up to DRAIN_MAX_BYTES)."""
    declared = environ.get("CONTENT_LENGTH") or ""
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if not chunked and (not declared.isdigit() or int(declared) > DRAIN_MAX_BYTES):
        return  # nothing to read, or more than is worth reading: the connection closes
    stream, left = environ.get("wsgi.input"), DRAIN_MAX_BYTES
    while stream is not None and left > 0:
        chunk = stream.read(min(64 * 1024, left))
        if not chunk:
            break
        left -= len(chunk)


class InboundObserver:
    """Wraps a WSGI app with tracing, metrics, request ids and access logs."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        started = time.perf_counter()
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        rid = environ[REQUEST_ID_KEY] = request_id(environ)
        outcome: dict[str, int] = {}
        if path in QUIET_PATHS:
            body = self.app(environ, _responder(start_response, outcome, rid, ""))
            self._measure(environ, method, started, outcome)
            return body

        # start_span and attach rather than start_as_current_span: the same span, without
        # the context-manager layers (measured on the gateway's hot path, BENCHMARKS.md).
        parent = parent_context(environ)
        span = tracer.start_span(
            method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.path": path,
                "url.scheme": environ.get("wsgi.url_scheme", "http"),
                "server.port": int(environ.get("SERVER_PORT") or 0),
                "client.address": environ.get("REMOTE_ADDR", ""),
                "user_agent.original": environ.get("HTTP_USER_AGENT", ""),
                "http.request.header.x_request_id": rid,
            },
        )
        span_context = span.get_span_context()
        trace_id = span_id = ""
        if span_context.is_valid:
            trace_id = format(span_context.trace_id, "032x")
            span_id = format(span_context.span_id, "016x")
        token = context.attach(trace.set_span_in_context(span, parent))
        try:
            body = self.app(environ, _responder(start_response, outcome, rid, trace_id))
            route = environ.get(ROUTE_KEY)
            status = outcome.get("status", 500)
            if route:
                span.update_name(f"{method} {route}")
                span.set_attributes({"http.route": route, "http.response.status_code": status})
            else:
                span.set_attribute("http.response.status_code", status)
            if status == 413:
                drain_refused_body(environ)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            sampled = trace_id and span_context.trace_flags.sampled
            elapsed = self._measure(environ, method, started, outcome, trace_id if sampled else "")
            log_access(
                f"{method} {path} {status}",
                {
                    "request_id": rid,
                    "method": method,
                    "route": route or "",
                    "path": path,
                    "status": status,
                    "latency_ms": round(elapsed * 1000, 3),
                },
                trace_id,
                span_id,
            )
        finally:
            context.detach(token)
            span.end()
        return body

    @staticmethod
    def _measure(
        environ: dict[str, Any], method: str, started: float, outcome: dict, trace_id: str = ""
    ) -> float:
        """Observe the duration, with ``trace_id`` (the request's sampled trace) as exemplar."""
        elapsed = time.perf_counter() - started
        route = environ.get(ROUTE_KEY) or "unmatched"
        status = str(outcome.get("status", 500))
        metrics.SERVER_DURATION.labels(method, route, status).observe(
            elapsed, exemplar={"trace_id": trace_id} if trace_id else None
        )
        return elapsed


def _responder(
    start_response: Callable[..., Any], outcome: dict[str, int], rid: str, trace_id: str
) -> Callable[..., Any]:
    """start_response that notes the status and returns both ids to the caller."""

    def respond(status: str, headers: list[tuple[str, str]], exc_info: Any = None):
        outcome["status"] = int(status[:3])
        headers.append((REQUEST_ID_HEADER, rid))
        if trace_id:
            headers.append((TRACE_ID_HEADER, trace_id))
        return start_response(status, headers, exc_info)

    return respond


def install(app: Flask) -> None:
    """Observe every request of ``app``; the route template is read after routing."""

    @app.before_request
    def _remember_route() -> None:
        if request.url_rule is not None:
            request.environ[ROUTE_KEY] = request.url_rule.rule

    app.wsgi_app = InboundObserver(app.wsgi_app)  # type: ignore[method-assign]


def current_request_id() -> str:
    return request.environ.get(REQUEST_ID_KEY, "")
