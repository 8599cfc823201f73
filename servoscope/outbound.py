"""The HTTP client every hop uses: pooled keep-alive connections, one client span
per attempt, W3C trace context and the request id carried downstream.

This is the seam the gateway's resilience pipeline wraps: one call, plain values
in and out, no retries or breakers of its own.

    >>> client = UpstreamClient("servo-controller", "http://127.0.0.1:8101")
    >>> reply = client.request("GET", "/current-angle?channel=0", timeout=1.0)  # doctest: +SKIP
    >>> reply.status, reply.json()  # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import urllib3
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from servoscope import metrics

tracer = trace.get_tracer("servoscope.outbound")


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes = field(repr=False)

    def json(self) -> Any:
        return json.loads(self.body)


def one_per_name(*sources: dict[str, str]) -> dict[str, str]:
    """Merge header dicts, later ones winning, one entry per case-insensitive name.

    Header names are case-insensitive, dict keys are not: a copied ``X-Request-Id`` beside a
    set ``X-Request-ID`` would go out twice and arrive as one invalid comma-joined value.
    """
    merged: dict[str, tuple[str, str]] = {}
    for source in sources:
        for name, value in source.items():
            merged[name.lower()] = (name, value)
    return dict(merged.values())


class UpstreamClient:
    """A keep-alive connection pool to one upstream base URL."""

    def __init__(self, name: str, base_url: str, *, max_connections: int = 32) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._pool = urllib3.HTTPConnectionPool(
            self._host, self._port, maxsize=max_connections, block=False, retries=False
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | urllib3.Timeout = 5.0,
        attempt: int = 1,
        attributes: dict[str, str | int | float | bool] | None = None,
    ) -> Reply:
        """Send one attempt; connection errors and timeouts raise urllib3's exceptions.

        ``timeout`` is seconds for connect and read alike, or a ``urllib3.Timeout``;
        ``attributes`` are added to the client span (the gateway's resilience decisions).
        """
        started = time.perf_counter()
        status = 0
        with tracer.start_as_current_span(
            method,
            kind=SpanKind.CLIENT,
            record_exception=True,
            attributes={
                "http.request.method": method,
                "server.address": self._host,
                "server.port": self._port,
                "url.full": self.base_url + path,
                "peer.service": self.name,
                "http.request.resend_count": attempt - 1,
                **(attributes or {}),
            },
        ) as span:
            context: dict[str, str] = {}
            propagate.inject(context)
            sent = one_per_name(headers or {}, context)
            try:
                response = self._pool.urlopen(
                    method,
                    path,
                    body=body,
                    headers=sent,
                    timeout=timeout
                    if isinstance(timeout, urllib3.Timeout)
                    else urllib3.Timeout(connect=timeout, read=timeout),
                    redirect=False,
                    preload_content=True,
                )
                status = response.status
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                return Reply(status, dict(response.headers), response.data)
            except urllib3.exceptions.HTTPError as exc:
                span.set_attribute("error.type", type(exc).__name__)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                raise
            finally:
                metrics.observe(
                    metrics.CLIENT_DURATION,
                    time.perf_counter() - started,
                    method,
                    self.name,
                    str(status or "error"),
                )

    def close(self) -> None:
        self._pool.close()
