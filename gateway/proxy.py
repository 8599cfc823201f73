"""Forwarding one request to its upstream and mapping failures to DESIGN.md's statuses."""

from __future__ import annotations

from flask import Request, Response
from urllib3.exceptions import HTTPError, TimeoutError

from servoscope.outbound import UpstreamClient
from servoscope.problems import Problem

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


def forward(
    client: UpstreamClient,
    request: Request,
    upstream_path: str,
    request_id: str,
    timeout_s: float,
) -> Response:
    path = upstream_path + (f"?{request.query_string.decode()}" if request.query_string else "")
    body = request.get_data() if request.method in ("POST", "PUT", "PATCH") else None
    try:
        reply = client.request(
            request.method,
            path,
            body=body,
            headers=outbound_headers(request, request_id),
            timeout=timeout_s,
        )
    except TimeoutError:
        raise Problem(
            504,
            "Upstream Timeout",
            f"{client.name} did not answer within {timeout_s}s",
            slug="upstream-timeout",
            upstream=client.name,
        ) from None
    except HTTPError as exc:
        raise Problem(
            502,
            "Upstream Unreachable",
            f"{client.name} could not be reached: {type(exc).__name__}",
            slug="upstream-unreachable",
            upstream=client.name,
        ) from None
    dropped = NOT_RETURNED | _connection_listed(reply.headers)
    headers = [(k, v) for k, v in reply.headers.items() if k.lower() not in dropped]
    return Response(reply.body, status=reply.status, headers=headers)
