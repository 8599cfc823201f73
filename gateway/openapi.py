"""``GET /openapi.json``: the OpenAPI 3.1 contract of the public API, the whole of it.

Generated from the route table the gateway serves and the upstreams' own contracts
(:mod:`gateway.contracts`), the same objects the gateway checks path parameters with
and the services validate with, so it cannot drift from the code: every route in
``routes.yaml`` is in it (an operation its service does not declare yet is described
from its path), with its parameters, its request body and media type, its 2xx schema,
and every status it can answer — the service's own and the gateway's (401, 403, 413,
429, 502, 503, 504) — each error a problem+json.
"""

from __future__ import annotations

from typing import Any

from gateway.contracts import Contracts
from gateway.routing import Operation as RouteOperation
from gateway.routing import Route, RouteTable
from servoscope import contract
from servoscope.telemetry import VERSION

# What the gateway itself answers on every proxied operation, whatever the upstream.
GATEWAY_ANSWERS = {
    400: "a path parameter does not match its pattern, or the request cannot be forwarded "
    "as HTTP/1.1 (`detail` says what); nothing was sent upstream",
    401: "missing or unknown API key (WWW-Authenticate)",
    403: "the API key lacks the operation's scope",
    413: "the body is larger than the route accepts",
    429: "rate limited for this API key (Retry-After, RateLimit, RateLimit-Policy)",
    502: "the upstream could not be reached or broke the exchange off",
    503: "the upstream's circuit breaker is open or its bulkhead is full (Retry-After)",
    504: "the upstream did not answer in time, or the request's deadline passed",
}


def _described(route: Route, op: RouteOperation, contracts: Contracts) -> contract.Operation:
    found = contracts.get((route.name, op.method, op.path))
    return found or contract.undeclared(op.method, op.path)


def _operation(route: Route, op: RouteOperation, contracts: Contracts) -> dict[str, Any]:
    declared = _described(route, op, contracts)
    statuses = {**declared.statuses(), **GATEWAY_ANSWERS}
    for status, text in declared.statuses().items():
        if status in GATEWAY_ANSWERS:
            statuses[status] = f"{text}; or {GATEWAY_ANSWERS[status]}"
    if op.fallback == "last_known":
        statuses[200] += "; or, while the breaker is open, the last known answer (Warning)"
    operation_id = f"{route.name}_{op.method.lower()}_{contract.slug(op.path)}"
    return contract.operation_openapi(
        declared,
        statuses=dict(sorted(statuses.items())),
        operation_id=operation_id,
        extra={"tags": [route.name], "security": [{"apiKey": [op.scope]}]},
    )


def _links(paths: dict[str, dict[str, Any]]) -> None:
    """A created resource's id leads to the operations on it (the stateful phase of a
    contract fuzzer follows them): POST <prefix>/x answers an id, <prefix>/x/{id} takes it."""
    for path, methods in paths.items():
        created = methods.get("post", {}).get("responses", {}).get("202")
        if created is None:
            continue
        # Only reads: DELETE on a move cancels it and keeps it readable, which a fuzzer's
        # use-after-free check would take for a resource that outlived its deletion.
        links = {
            f"{method}_{target['operationId']}": {
                "operationId": target["operationId"],
                "parameters": {"id": "$response.body#/id"},
            }
            for item_path, item in paths.items()
            if item_path == f"{path}/{{id}}"
            for method, target in item.items()
            if method == "get"
        }
        if links:
            created["links"] = links


def document(table: RouteTable, contracts: Contracts | None = None) -> dict[str, Any]:
    contracts = contracts or {}
    paths: dict[str, dict[str, Any]] = {}
    for route in table.routes:
        for op in route.operations:
            paths.setdefault(route.prefix + op.path, {})[op.method.lower()] = _operation(
                route, op, contracts
            )
    _links(paths)
    for path in ("/healthz", "/readyz"):
        paths[path] = {"get": contract.health_operation(path)}
    return contract.document(
        "servoscope gateway",
        VERSION,
        paths,
        components={
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "API key with scopes read, write, admin",
                }
            }
        },
        security=[{"apiKey": []}],
    )
