"""RFC 9457 problem details: the one error format every process of the stack speaks.

Raise :class:`Problem` anywhere in a request and the app factory turns it into an
``application/problem+json`` response carrying the current trace id::

    raise Problem(422, "angle out of range",
                  "angle must be between 0 and 180 degrees; got 200", field="angle")

Werkzeug's own HTTP errors (404, 405, 413, ...) and anything unexpected are mapped
to the same shape, so a client never has to parse an HTML error page.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from flask import Flask, Response, request
from opentelemetry import trace
from werkzeug.exceptions import HTTPException

from servoscope.settings import REPO_ROOT

MEDIA_TYPE = "application/problem+json"
# Every process serves the documentation of each type at this path (docs/problems.md,
# one section per type), so a problem's ``type`` resolved against the host that
# answered leads to what it means and what to do.
TYPE_BASE = "/problems/"
CATALOGUE = REPO_ROOT / "docs" / "problems.md"
# Werkzeug's own errors, by status: the problem types they are answered as.
HTTP_ERROR_TYPES = {
    400: "bad-request",
    404: "not-found",
    405: "method-not-allowed",
    413: "content-too-large",
    415: "unsupported-media-type",
}

log = logging.getLogger(__name__)


class Problem(Exception):
    """An error answered as problem+json.

    ``slug`` names the problem type (``TYPE_BASE + slug``); extra keyword
    arguments become extension members, e.g. ``field="angle"``.
    """

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        slug: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.slug = slug or title.lower().replace(" ", "-")
        self.headers = headers or {}
        self.extensions = extensions


def type_uri(slug: str) -> str:
    return TYPE_BASE + slug


def catalogue_entry(slug: str) -> str | None:
    """The section of docs/problems.md that documents ``slug`` (markdown), or None."""
    text = CATALOGUE.read_text()
    match = re.search(rf"^## {re.escape(slug)}\n.*?(?=^## |\Z)", text, re.M | re.S)
    return match.group(0) if match else None


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def problem_body(problem: Problem, instance: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": type_uri(problem.slug),
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": instance,
    }
    body.update(problem.extensions)
    trace_id = current_trace_id()
    if trace_id:
        body["trace_id"] = trace_id
    return body


def problem_response(problem: Problem, instance: str | None = None) -> Response:
    body = problem_body(problem, instance if instance is not None else request.path)
    response = Response(json.dumps(body), status=problem.status, mimetype=MEDIA_TYPE)
    response.headers.update(problem.headers)
    return response


def from_http_exception(exc: HTTPException) -> Problem:
    """Werkzeug's HTTP error as the problem it is answered as."""
    status = exc.code or 500
    title = exc.name
    detail = exc.description or title
    headers = {k: v for k, v in exc.get_headers() if k.lower() not in ("content-type",)}
    return Problem(status, title, detail, headers=headers, slug=HTTP_ERROR_TYPES.get(status))


def install(app: Flask) -> None:
    """Answer every error of ``app`` as problem+json."""

    @app.get(TYPE_BASE + "<slug>")
    def _problem_type(slug: str) -> Response:
        entry = catalogue_entry(slug)
        if entry is None:
            raise Problem(404, "Not Found", f"no problem type {slug!r}", slug="not-found")
        return Response(entry, mimetype="text/markdown")

    @app.errorhandler(Problem)
    def _problem(exc: Problem) -> Response:
        return problem_response(exc)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        return problem_response(from_http_exception(exc))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response(
            Problem(
                500,
                "Internal Server Error",
                "the server hit an unexpected error; the trace id identifies it in the logs",
            )
        )
