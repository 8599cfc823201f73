"""The HTTP client every hop uses: pooled keep-alive connections, one client span
per attempt, W3C trace context and the request id carried downstream.

This is the seam the gateway's resilience pipeline wraps: one call, plain values
in and out, no retries or breakers of its own. Failures are :class:`UpstreamError`
(could not connect, connection lost, malformed answer) or its subclass
:class:`UpstreamTimeout`; a request that cannot be put on the wire at all (a path or
header that HTTP/1.1 cannot carry) is :class:`RequestUnsendable`, raised before any
connection is touched — the caller's fault, not the upstream's
(:mod:`servoscope.resilience.blame`).

    >>> client = UpstreamClient("servo-controller", "http://127.0.0.1:8101")
    >>> reply = client.request("GET", "/current-angle?channel=0", timeout=1.0)  # doctest: +SKIP
    >>> reply.status, reply.json()  # doctest: +SKIP

The pool is the standard library's ``http.client`` connections kept in a deque, not
urllib3's pool: measured on the gateway's hot path (bench/bench_gateway.py), urllib3's
layers (retry and timeout objects, header dicts, response wrapper) cost more CPU per
call than the HTTP exchange itself, and the seam needs none of them.
"""

from __future__ import annotations

import collections
import http.client
import json
import re
import select
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from gevent.monkey import get_original
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from servoscope import metrics

tracer = trace.get_tracer("servoscope.outbound")
# The kernel's poll even under gevent: gevent's would yield to its loop for a zero-timeout
# check (measured ~0.2 ms of wall time per call on the gateway's hot path).
_poll = get_original("select", "poll")


class UpstreamError(Exception):
    """No usable answer: the upstream could not be reached or broke the exchange off."""


class UpstreamTimeout(UpstreamError):
    """Connecting, or waiting for the answer, took longer than the attempt allowed."""


class RequestUnsendable(ValueError):
    """The request cannot be sent as HTTP/1.1: nothing went out; ``str()`` names the part."""


# What http.client refuses in a request target (RFC 9112 3.2: no space, no control
# character, ASCII only) and in header fields (RFC 9110 5.5: no CR, LF or NUL).
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]|[^\x00-\x7f]")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_FIELD_VALUE = re.compile(r"[\x00\r\n]|[^\x00-\xff]")


def check_sendable(path: str, headers: dict[str, str]) -> None:
    """Raise :class:`RequestUnsendable` naming what HTTP/1.1 cannot carry, else return."""
    if not path.startswith("/"):
        raise RequestUnsendable(f"the request target {path!r} does not start with '/'")
    bad = _BAD_TARGET.search(path)
    if bad:
        raise RequestUnsendable(
            f"the path holds {bad.group()!r}, which a request target cannot carry unencoded"
        )
    names_ok = all(_TOKEN.fullmatch(name) for name in headers)
    if names_ok and not _BAD_FIELD_VALUE.search("".join(headers.values())):
        return  # the common case: one scan of all the values
    for name, value in headers.items():  # name the field at fault
        if not _TOKEN.fullmatch(name):
            raise RequestUnsendable(f"{name!r} is not a valid header field name")
        bad = _BAD_FIELD_VALUE.search(value)
        if bad:
            raise RequestUnsendable(
                f"header {name}: its value holds {bad.group()!r}, which HTTP/1.1 cannot carry"
            )


@dataclass(frozen=True)
class Timeout:
    """Seconds to connect, seconds of silence while reading, and an optional cap on both."""

    connect: float
    read: float
    total: float | None = None


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


def _closed_by_peer(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive connection that is readable was closed by the peer (or is garbage)."""
    if conn.sock is None:
        return True
    poller = _poll()
    poller.register(conn.sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def _headers(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Answer headers as a dict; a repeated field's values joined as RFC 9110 5.3 allows."""
    headers: dict[str, str] = {}
    for name, value in pairs:
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


class UpstreamClient:
    """A keep-alive connection pool to one upstream base URL."""

    def __init__(self, name: str, base_url: str, *, max_connections: int = 32) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._max_idle = max_connections
        # deque's append and pop are atomic: the pool needs no lock of its own.
        self._idle: collections.deque[http.client.HTTPConnection] = collections.deque()

    def _connection(self, connect_s: float) -> http.client.HTTPConnection:
        """An idle connection the upstream has not closed meanwhile, else a new one."""
        while self._idle:
            try:
                conn = self._idle.pop()
            except IndexError:
                break
            if not _closed_by_peer(conn):
                return conn
            conn.close()
        conn = http.client.HTTPConnection(self._host, self._port, timeout=connect_s)
        conn.connect()
        return conn

    def _release(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse):
        if response.will_close or len(self._idle) >= self._max_idle:
            conn.close()
        else:
            self._idle.append(conn)

    def _exchange(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
        timeout: Timeout,
        checked: bool,
    ) -> Reply:
        if not checked:
            check_sendable(path, headers)  # before a connection is taken: nothing goes out
        started = time.monotonic()
        connect_s = min(timeout.connect, timeout.total or timeout.connect)
        try:
            conn = self._connection(connect_s)
        except TimeoutError as exc:
            raise UpstreamTimeout(f"connect timed out after {connect_s:.3g}s") from exc
        except OSError as exc:
            raise UpstreamError(f"could not connect: {type(exc).__name__}") from exc
        read_s = timeout.read
        if timeout.total is not None:
            read_s = max(0.001, min(read_s, timeout.total - (time.monotonic() - started)))
        try:
            assert conn.sock is not None
            conn.sock.settimeout(read_s)
            try:
                conn.request(method, path, body=body, headers=headers)
            except (http.client.InvalidURL, ValueError) as exc:
                # Refused while the request was built, before a byte was sent.
                conn.close()
                raise RequestUnsendable(str(exc)) from exc
            response = conn.getresponse()
            data = response.read()
        except TimeoutError as exc:
            conn.close()
            raise UpstreamTimeout(f"no answer within {read_s:.3g}s") from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise UpstreamError(f"the exchange broke off: {type(exc).__name__}") from exc
        self._release(conn, response)
        return Reply(response.status, _headers(response.getheaders()), data)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | Timeout = 5.0,
        attempt: int = 1,
        attributes: dict[str, str | int | float | bool] | None = None,
        checked: bool = False,
    ) -> Reply:
        """Send one attempt; raises :class:`UpstreamError`, :class:`UpstreamTimeout`, or
        :class:`RequestUnsendable` when nothing could be sent.

        ``timeout`` is seconds for connect and read alike, or a :class:`Timeout`;
        ``attributes`` are added to the client span (the gateway's resilience decisions).
        ``checked``: the caller already ran :func:`check_sendable` on ``path`` and
        ``headers`` (the gateway does, to refuse the client's mistake before any attempt);
        what it adds after that check must be sendable by construction.
        """
        started = time.perf_counter()
        status = 0
        # Not made current: nothing below opens spans, so one context switch fewer.
        span = tracer.start_span(
            method,
            kind=SpanKind.CLIENT,
            attributes={
                "http.request.method": method,
                "server.address": self._host,
                "server.port": self._port,
                "url.full": self.base_url + path,
                "peer.service": self.name,
                "http.request.resend_count": attempt - 1,
                **(attributes or {}),
            },
        )
        context: dict[str, str] = {}
        propagate.inject(context, context=trace.set_span_in_context(span))
        sent = one_per_name(headers or {}, context)
        if not isinstance(timeout, Timeout):
            timeout = Timeout(timeout, timeout)
        try:
            reply = self._exchange(method, path, body, sent, timeout, checked)
            status = reply.status
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            return reply
        except (UpstreamError, RequestUnsendable) as exc:
            span.record_exception(exc)
            span.set_attribute("error.type", type(exc.__cause__ or exc).__name__)
            span.set_status(Status(StatusCode.ERROR, str(exc)))
            raise
        finally:
            span.end()
            metrics.observe(
                metrics.CLIENT_DURATION,
                time.perf_counter() - started,
                method,
                self.name,
                str(status or "error"),
            )

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
