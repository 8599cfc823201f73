"""What a proxied request and its answer carry across the gateway: header rules.

Hop-by-hop fields (RFC 9110 7.6.1, and any the ``Connection`` field lists) stop here
both ways; the caller's credentials and Host stay at the gateway; ``X-Forwarded-For``,
``-Proto`` and ``-Host`` tell the upstream who really asked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from flask import Request

from servoscope.outbound import Reply

_REASONS = {status.value: status.phrase for status in HTTPStatus}

# RFC 9110 7.6.1 hop-by-hop fields, plus the gateway's own credentials and Host.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
NOT_FORWARDED = HOP_BY_HOP | {"host", "authorization", "content-length"}
# The gateway's own server and inbound layer set these on the way out.
NOT_RETURNED = HOP_BY_HOP | {"content-length", "server", "date", "x-request-id", "x-trace-id"}


def _connection_listed(headers: dict[str, str] | Request) -> set[str]:
    value = headers.get("Connection", "") or ""
    return {token.strip().lower() for token in value.split(",") if token.strip()}


def outbound_headers(request: Request, request_id: str) -> dict[str, str]:
    dropped = NOT_FORWARDED | _connection_listed(request.headers)
    headers = {k: v for k, v in request.headers.items() if k.lower() not in dropped}
    forwarded_for = request.headers.get("X-Forwarded-For")
    client = request.remote_addr or ""
    headers["X-Forwarded-For"] = f"{forwarded_for}, {client}" if forwarded_for else client
    headers["X-Forwarded-Proto"] = request.scheme
    headers["X-Forwarded-Host"] = request.host
    headers["X-Request-ID"] = request_id
    return headers


def returned_headers(reply: Reply) -> list[tuple[str, str]]:
    """The upstream's answer headers minus hop-by-hop ones and those the gateway sets."""
    dropped = NOT_RETURNED | _connection_listed(reply.headers)
    return [(k, v) for k, v in reply.headers.items() if k.lower() not in dropped]


@dataclass(frozen=True)
class Answer:
    """The gateway's answer to a proxied request, and the WSGI app that sends it.

    Plain values rather than a werkzeug ``Response``: on the hot path that object's
    header bookkeeping cost more than building the list here (BENCHMARKS.md). Flask
    views may return it too (Flask runs any WSGI callable as a response).
    """

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @classmethod
    def of(cls, status: int, headers: list[tuple[str, str]], body: bytes, added: dict[str, str]):
        """``headers`` with the gateway's ``added`` fields in place of same-named ones."""
        replaced = {name.lower() for name in added}
        kept = [(k, v) for k, v in headers if k.lower() not in replaced]
        return cls(status, [*kept, *added.items()], body)

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        reason = _REASONS.get(self.status, "Unknown")
        start_response(
            f"{self.status} {reason}", [*self.headers, ("Content-Length", str(len(self.body)))]
        )
        return [self.body]
