"""The benchmark's reference proxy: the gateway's HTTP client and tracing, nothing else.

No Flask, pipeline, access log or request ids; a server span and the client's span per
request when tracing is on. Run under the gateway's worker class, it shows what this
machine allows a Python proxy, so the gateway's rows can be read against it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import context, trace
from opentelemetry.trace import SpanKind

from servoscope.outbound import UpstreamClient
from servoscope.settings import load
from servoscope.telemetry import setup_tracing

setup_tracing("bare-proxy", load())
tracer = trace.get_tracer("bench.bare_proxy")
client = UpstreamClient("trivial", os.environ["BARE_PROXY_UPSTREAM"], max_connections=64)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
    span = tracer.start_span(method, kind=SpanKind.SERVER, attributes={"url.path": path})
    token = context.attach(trace.set_span_in_context(span))
    try:
        reply = client.request(method, path, timeout=5.0)
    finally:
        context.detach(token)
        span.end()
    headers = [("Content-Type", reply.headers.get("Content-Type", "application/octet-stream"))]
    start_response(f"{reply.status} OK", [*headers, ("Content-Length", str(len(reply.body)))])
    return [reply.body]
