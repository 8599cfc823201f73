"""A service's HTTP contract as data: the one source of its OpenAPI document and of the
checks its routes run on path and query parameters.

Each service lists its operations in its ``contract.py`` (built from its configuration,
so a channel's range in the document is the range its validators enforce), serves the
document at ``/openapi.json``, and reads its parameters through :meth:`Param.read`::

    CHANNEL = Param("channel", "query", {"type": "integer", "minimum": 0, "maximum": 5})
    channel = CHANNEL.read()          # 422 naming `channel` when missing or out of range

The gateway builds its own document from its route table and these contracts
(:mod:`gateway.openapi`), and checks path parameters against the same patterns before
anything is sent upstream.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from flask import request

from servoscope.jsonbody import invalid
from servoscope.problems import Problem, type_uri

# Statuses every operation with a JSON request body can answer (servoscope.jsonbody).
BODY_ANSWERS = {
    400: "the body is not valid JSON",
    413: "the body is too large",
    415: "the body is not application/json",
    422: "a field is missing, unknown, of the wrong type or out of range (`field` names it)",
}
PARAM_ANSWERS = {
    400: "a path parameter does not match its pattern (`field` names it)",
    422: "a query parameter is missing or invalid (`field` names it)",
}

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "instance"],
    "properties": {
        "type": {"type": "string", "format": "uri-reference"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "trace_id": {"type": "string"},
        "field": {"type": ["string", "null"]},
    },
}


@dataclass(frozen=True)
class Param:
    """One path or query parameter: its JSON Schema is both documented and enforced."""

    name: str
    location: Literal["path", "query", "header"]
    schema: dict[str, Any]
    required: bool = True
    description: str = ""

    def problem(self, raw: str | None) -> Problem | None:
        """The problem with ``raw`` (the parameter as sent, None when absent), or None."""
        kind = self.schema.get("type", "string")
        if raw is None:
            return invalid(self.name, f"query parameter {self.name!r} is required")
        if kind in ("integer", "number"):
            try:
                value: float = int(raw) if kind == "integer" else float(raw)
            except ValueError:
                return self._invalid(f"{self.name!r} must be an {kind}; got {raw!r}")
            low, high = self.schema.get("minimum", -math.inf), self.schema.get("maximum", math.inf)
            if not (math.isfinite(value) and low <= value <= high):
                return self._invalid(f"{self.name!r} must be from {low} to {high}; got {raw}")
            return None
        allowed = self.schema.get("enum")
        if allowed is not None and raw not in allowed:
            return self._invalid(f"{self.name!r} must be one of {allowed}; got {raw!r}")
        low, high = self.schema.get("minLength", 0), self.schema.get("maxLength", math.inf)
        if not low <= len(raw) <= high:
            return self._invalid(f"{self.name!r} must be {low} to {high} characters long")
        pattern = self.schema.get("pattern")
        if pattern and not re.search(pattern, raw):
            shown = raw if len(raw) <= 40 else raw[:40] + "..."
            return self._invalid(
                f"{self.name!r} must match {pattern} ({self.description or 'see the API document'})"
                f"; got {shown!r}"
            )
        return None

    def _invalid(self, detail: str) -> Problem:
        if self.location == "path":
            return Problem(
                400,
                "Invalid Path Parameter",
                detail,
                slug="invalid-path-parameter",
                field=self.name,
            )
        return invalid(self.name, detail)

    def read(self, raw: str | None = None) -> Any:
        """The parameter of the current request (or ``raw``), converted; raises its problem.
        An optional query parameter that is absent reads as its schema's ``default``."""
        if raw is None and self.location == "query":
            raw = request.args.get(self.name)
            if raw is None and not self.required:
                return self.schema.get("default")
        problem = self.problem(raw)
        if problem is not None:
            raise problem
        kind = self.schema.get("type", "string")
        assert raw is not None
        return int(raw) if kind == "integer" else float(raw) if kind == "number" else raw

    def openapi(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": self.name,
            "in": self.location,
            "required": self.required or self.location == "path",
            "schema": self.schema,
        }
        if self.description:
            entry["description"] = self.description
        return entry


@dataclass(frozen=True)
class Operation:
    """One operation: what it takes, what it answers with, and when."""

    method: str
    path: str  # OpenAPI template below the service root, e.g. /moves/{id}
    summary: str
    answers: dict[int, str]  # status -> when; every status >= 400 is a problem+json
    params: tuple[Param, ...] = ()
    body: dict[str, Any] | None = None  # JSON Schema of the application/json body
    body_required: bool = True
    returns: dict[str, Any] = field(default_factory=dict)  # JSON Schema of the 2xx body

    @property
    def key(self) -> tuple[str, str]:
        return self.method, self.path

    def statuses(self) -> dict[int, str]:
        """Every status the operation can answer: its own, and its body's and parameters'."""
        found = dict(self.answers)
        if self.body is not None:
            found = {**BODY_ANSWERS, **found}
        for param in self.params:
            extra = 400 if param.location == "path" else 422
            found.setdefault(extra, PARAM_ANSWERS[extra])
        return dict(sorted(found.items()))

    def path_param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.location == "path" and p.name == name), None)


def slug(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")


def problem_response(text: str) -> dict[str, Any]:
    return {
        "description": text,
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }


def operation_openapi(
    op: Operation,
    *,
    statuses: dict[int, str] | None = None,
    operation_id: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The OpenAPI operation object of ``op`` (``statuses`` in place of its own)."""
    responses: dict[str, Any] = {}
    for status, text in (statuses or op.statuses()).items():
        if status < 400:
            responses[str(status)] = {
                "description": text,
                "content": {"application/json": {"schema": op.returns or {"type": "object"}}},
            }
        else:
            responses[str(status)] = problem_response(text)
    entry: dict[str, Any] = {
        "operationId": operation_id or f"{op.method.lower()}_{slug(op.path) or 'root'}",
        "summary": op.summary,
        "parameters": [param.openapi() for param in op.params],
        "responses": responses,
    }
    if op.body is not None:
        entry["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": op.body}},
        }
    entry.update(extra or {})
    return entry


def document(
    title: str,
    version: str,
    paths: dict[str, dict[str, Any]],
    *,
    components: dict[str, Any] | None = None,
    security: list[dict[str, list[str]]] | None = None,
) -> dict[str, Any]:
    """An OpenAPI 3.1 document around ``paths``, with the Problem schema (every error's
    ``type`` is a URI under :func:`~servoscope.problems.type_uri`)."""
    problem = {**PROBLEM_SCHEMA, "description": f"RFC 9457 problem; types: {type_uri('')}"}
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {"schemas": {"Problem": problem}, **(components or {})},
    }
    if security is not None:
        doc["security"] = security
    return doc


def undeclared(method: str, path: str) -> Operation:
    """An operation served but not (yet) in its service's contract: described from its
    path alone, with the answers every operation of the stack can give, so a route added
    to a service or to the gateway's table is in the document from its first commit."""
    params = tuple(
        Param(name, "path", {"type": "string"}) for name in re.findall(r"\{(\w+)\}", path)
    )
    answers = {
        200: "the answer (not described in detail yet: add it to the service's contract)",
        400: "malformed request",
        404: "not found",
        422: "invalid field or parameter",
        503: "unavailable for now (Retry-After)",
    }
    return Operation(method, path, f"{method} {path}", answers, params=params)


def flask_template(rule: str) -> str:
    """``/moves/<move_id>`` (Flask) as ``/moves/{move_id}`` (OpenAPI)."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def service_document(title: str, version: str, operations: list[Operation]) -> dict[str, Any]:
    """A service's own ``/openapi.json``: its operations, and its health endpoints."""
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = operation_openapi(op)
    for path in ("/healthz", "/readyz"):
        paths[path] = {"get": health_operation(path)}
    return document(title, version, paths)


def health_operation(path: str) -> dict[str, Any]:
    answers: dict[str, Any] = {
        "200": {"description": "ok", "content": {"application/json": {"schema": {}}}}
    }
    if path == "/readyz":
        answers["503"] = problem_response("not ready (Retry-After)")
    return {"operationId": slug(path), "summary": "health", "security": [], "responses": answers}
