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

from werkzeug.sansio.utils import get_content_length, get_host
from werkzeug.wsgi import get_input_stream

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
# The fields the gateway sets on the way up, replacing the caller's.
REPLACED = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id"})


def environ_key(name: str) -> str:
    """Where WSGI keeps a request's header field: ``X-Request-ID`` -> ``HTTP_X_REQUEST_ID``."""
    key = name.upper().replace("-", "_")
    return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key


NOT_FORWARDED_KEYS = frozenset(environ_key(name) for name in NOT_FORWARDED | REPLACED)


def _connection_listed(value: str | None) -> set[str]:
    return {token.strip().lower() for token in (value or "").split(",") if token.strip()}


class RequestHeaders:
    """The request's header fields, read straight from the WSGI environ (case-insensitive)."""

    __slots__ = ("environ",)

    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.environ.get(environ_key(name), default)

    def __getitem__(self, name: str) -> str:
        return self.environ[environ_key(name)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and environ_key(name) in self.environ


class ProxiedRequest:
    """What the pipeline reads of a proxied request: werkzeug's ``Request`` attributes it
    uses, with the same values (werkzeug's own rules for length, host and input stream),
    read from the environ when asked. Building werkzeug's object and its header views for
    every proxied request cost more than the request needs (BENCHMARKS.md)."""

    __slots__ = ("environ", "headers", "method")

    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ
        self.method: str = environ.get("REQUEST_METHOD", "GET").upper()
        self.headers = RequestHeaders(environ)

    @property
    def path(self) -> str:
        """The path, decoded from UTF-8 as werkzeug decodes it (WSGI passes it as latin-1)."""
        raw = self.environ.get("PATH_INFO") or ""
        if not raw.isascii():
            raw = raw.encode("latin-1").decode(errors="replace")
        return "/" + raw.lstrip("/")

    @property
    def query_string(self) -> bytes:
        return self.environ.get("QUERY_STRING", "").encode("latin-1")

    @property
    def content_length(self) -> int | None:
        declared = self.environ.get("CONTENT_LENGTH")
        if declared is None:
            return None
        return get_content_length(declared, self.environ.get("HTTP_TRANSFER_ENCODING"))

    @property
    def stream(self) -> Any:
        return get_input_stream(self.environ)

    @property
    def remote_addr(self) -> str | None:
        return self.environ.get("REMOTE_ADDR")

    @property
    def scheme(self) -> str:
        return self.environ.get("wsgi.url_scheme", "http")

    @property
    def host(self) -> str:
        environ = self.environ
        name, port = environ.get("SERVER_NAME"), environ.get("SERVER_PORT")
        server = (name, int(port)) if name is not None and str(port).isdigit() else None
        return get_host(self.scheme, environ.get("HTTP_HOST"), server)


def outbound_headers(request: ProxiedRequest, request_id: str) -> dict[str, str]:
    """The caller's header fields as the upstream gets them, from the WSGI environ: minus
    hop-by-hop ones, credentials and Host, plus ``X-Forwarded-*`` and ``X-Request-ID``."""
    environ = request.environ
    dropped = NOT_FORWARDED_KEYS
    listed = environ.get("HTTP_CONNECTION")
    if listed:
        dropped = dropped | {environ_key(name) for name in _connection_listed(listed)}
    headers = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            if key not in dropped and key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                headers[key[5:].replace("_", "-").title()] = value
        elif key == "CONTENT_TYPE" and value and key not in dropped:
            headers["Content-Type"] = value
    forwarded_for = environ.get("HTTP_X_FORWARDED_FOR")
    client = request.remote_addr or ""
    headers["X-Forwarded-For"] = f"{forwarded_for}, {client}" if forwarded_for else client
    headers["X-Forwarded-Proto"] = request.scheme
    headers["X-Forwarded-Host"] = request.host
    headers["X-Request-ID"] = request_id
    return headers


def returned_headers(reply: Reply) -> list[tuple[str, str]]:
    """The upstream's answer headers minus hop-by-hop ones and those the gateway sets."""
    listed = reply.headers.get("Connection")
    dropped = NOT_RETURNED | _connection_listed(listed) if listed else NOT_RETURNED
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
