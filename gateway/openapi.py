"""``GET /openapi.json``: an OpenAPI 3.1 description of the public API.

Paths come from the route table itself, so a route cannot be served without being
described (a test checks it); bodies of the services' operations come from
:data:`BODIES`, and every error is the RFC 9457 problem schema.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.routing import RouteTable
from servoscope.telemetry import VERSION

PROBLEM = {
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "trace_id": {"type": "string"},
    },
}
ANGLE = {"type": "number", "minimum": 0, "maximum": 180}
CHANNEL = {"type": "integer", "minimum": 0, "maximum": 23}

# (method, path below the route prefix) -> request body schema, response body schema
BODIES: dict[tuple[str, str], tuple[dict[str, Any] | None, dict[str, Any]]] = {
    ("POST", "/set-position"): (
        {
            "type": "object",
            "required": ["channel", "angle"],
            "additionalProperties": False,
            "properties": {"channel": CHANNEL, "angle": ANGLE},
        },
        {
            "type": "object",
            "properties": {"channel": CHANNEL, "angle": ANGLE, "pulse_us": {"type": "number"}},
        },
    ),
    ("GET", "/current-angle"): (
        None,
        {
            "type": "object",
            "properties": {
                "channel": CHANNEL,
                "angle": ANGLE,
                "stale": {
                    "type": "boolean",
                    "description": "true from the gateway's last-known fallback (or an old "
                    "servo snapshot)",
                },
                "age_s": {"type": "number", "description": "age of the gateway's stale answer"},
            },
        },
    ),
}
ERRORS = {
    "401": "missing or invalid API key",
    "403": "the API key lacks the scope",
    "413": "body too large",
    "429": "rate limited (Retry-After, RateLimit, RateLimit-Policy)",
    "502": "upstream unreachable",
    "503": "circuit breaker open (Retry-After) or bulkhead full",
    "504": "upstream timeout or deadline exceeded",
}


def _slug(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", path)


def _problem_responses() -> dict[str, Any]:
    ref = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {code: {"description": text, "content": ref} for code, text in ERRORS.items()}


def document(table: RouteTable) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in table.routes:
        for op in route.operations:
            request_schema, response_schema = BODIES.get((op.method, op.path), (None, {}))
            operation: dict[str, Any] = {
                "operationId": f"{route.name}.{op.method.lower()}{_slug(op.path)}",
                "tags": [route.name],
                "summary": f"{op.method} {op.path} on {route.upstream}",
                "security": [{"apiKey": [op.scope]}],
                "parameters": [
                    {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                    for name in re.findall(r"\{(\w+)\}", op.path)
                ],
                "responses": {
                    "200": {
                        "description": "the upstream's answer",
                        "content": {"application/json": {"schema": response_schema}},
                    },
                    **_problem_responses(),
                },
            }
            if request_schema is not None:
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": request_schema}},
                }
            paths.setdefault(route.prefix + op.path, {})[op.method.lower()] = operation
    for path in ("/healthz", "/readyz"):
        paths[path] = {
            "get": {
                "summary": "health",
                "security": [],
                "responses": {"200": {"description": "ok"}},
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "servoscope gateway", "version": VERSION},
        "paths": paths,
        "components": {
            "schemas": {"Problem": PROBLEM},
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "API key with scopes read, write, admin",
                }
            },
        },
        "security": [{"apiKey": []}],
    }
