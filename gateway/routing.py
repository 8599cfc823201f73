"""The route table: which public paths go to which upstream, under which policy.

Loaded from ``gateway/routes.yaml`` and validated at start-up; a mistake names the
file and the exact entry (``routes.servo.policy.retry.max_attempts``), so the gateway
refuses to start rather than serve a half-read table. Every worker reads the file
when it boots, so ``kill -HUP <gunicorn master>`` reloads it: gunicorn starts fresh
workers on the new table and lets the old ones finish their in-flight requests.

Policy that protects an *upstream* (bulkhead, breaker, health checks, instances)
lives under ``upstreams:``; policy about a *route* (rate limit, deadline, retry,
attempt timeout, body size) under ``routes.<name>.policy``. ``defaults:`` seeds both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from gateway.auth import SCOPES
from gateway.policy import HealthCheckOptions, RateLimitOptions
from servoscope.resilience.breaker import BreakerOptions
from servoscope.resilience.options import (
    AttemptTimeoutOptions,
    BulkheadOptions,
    DeadlineOptions,
    PolicyError,
    RetryBudgetOptions,
    RetryOptions,
    parse,
)
from servoscope.settings import Settings, SettingsError

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
BALANCERS = ("round_robin", "least_outstanding")
FALLBACKS = ("last_known",)
ROUTE_POLICY = {
    "rate_limit": RateLimitOptions,
    "deadline": DeadlineOptions,
    "retry": RetryOptions,
    "attempt_timeout": AttemptTimeoutOptions,
}
UPSTREAM_POLICY = {
    "bulkhead": BulkheadOptions,
    "breaker": BreakerOptions,
    "retry_budget": RetryBudgetOptions,
    "health_check": HealthCheckOptions,
}
DEFAULT_MAX_BODY = 64 * 1024


class RouteConfigError(ValueError):
    """The route table is invalid; the message names the file, entry and fix."""


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # below the prefix, e.g. /moves/{id}
    scope: str
    fallback: str | None = None

    @property
    def flask_rule_tail(self) -> str:
        return re.sub(r"\{(\w+)\}", r"<\1>", self.path)


@dataclass(frozen=True)
class Instance:
    id: str  # host:port, the label on breaker metrics
    url: str


@dataclass(frozen=True)
class Upstream:
    name: str
    instances: tuple[Instance, ...]
    balance: str
    bulkhead: BulkheadOptions
    breaker: BreakerOptions
    retry_budget: RetryBudgetOptions
    health_check: HealthCheckOptions


@dataclass(frozen=True)
class Route:
    name: str
    prefix: str
    upstream: str
    operations: tuple[Operation, ...]
    rate_limit: RateLimitOptions
    deadline: DeadlineOptions
    retry: RetryOptions
    attempt_timeout: AttemptTimeoutOptions
    max_body_bytes: int = DEFAULT_MAX_BODY


@dataclass(frozen=True)
class RouteTable:
    routes: tuple[Route, ...]
    upstreams: dict[str, Upstream]
    source: Path


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RouteConfigError(f"{where}: must be a mapping")
    return value


def _instance(entry: Any, settings: Settings, where: str) -> Instance:
    if isinstance(entry, str) and entry in settings.sections.get("ports", {}):
        url = settings.url(entry)
    elif isinstance(entry, str) and entry.startswith("http://"):
        url = entry.rstrip("/")
    else:
        raise RouteConfigError(
            f"{where}: {entry!r} is neither a port name in {settings.source} [ports] "
            "nor an http:// URL"
        )
    parts = urlsplit(url)
    return Instance(f"{parts.hostname}:{parts.port or 80}", url)


def _stack_instances(name: str, settings: Settings, where: str) -> list[str]:
    try:
        return settings.instance_ports(name)
    except SettingsError as exc:
        raise RouteConfigError(f"{where}.instances: {exc}") from None


def _upstream(name: str, entry: Any, defaults: dict, settings: Settings, where: str) -> Upstream:
    entry = _mapping(entry, where)
    known = {"instances", "balance", *UPSTREAM_POLICY}
    for key in entry:
        if key not in known:
            raise RouteConfigError(f"{where}.{key}: unknown key; known keys are {sorted(known)}")
    # Unlisted instances follow the stack: [instances] in servoscope.toml (default one).
    raw_instances = entry.get("instances") or _stack_instances(name, settings, where)
    if not isinstance(raw_instances, list) or not raw_instances:
        raise RouteConfigError(f"{where}.instances: list one or more port names or URLs")
    instances = tuple(
        _instance(item, settings, f"{where}.instances[{i}]") for i, item in enumerate(raw_instances)
    )
    balance = entry.get("balance", "round_robin")
    if balance not in BALANCERS:
        raise RouteConfigError(f"{where}.balance: must be one of {list(BALANCERS)}")
    options = {
        key: parse(cls, entry.get(key), f"{where}.{key}", defaults.get(key))
        for key, cls in UPSTREAM_POLICY.items()
    }
    return Upstream(name, instances, balance, **options)


def _operation(op: Any, where: str) -> Operation:
    if not isinstance(op, dict):
        raise RouteConfigError(f"{where}: must be {{method, path, scope}}")
    method = str(op.get("method", "")).upper()
    if method not in METHODS:
        raise RouteConfigError(f"{where}.method: must be one of {sorted(METHODS)}")
    op_path = op.get("path")
    if not isinstance(op_path, str) or not op_path.startswith("/"):
        raise RouteConfigError(f"{where}.path: must start with '/'")
    scope = op.get("scope")
    if scope not in SCOPES:
        raise RouteConfigError(f"{where}.scope: must be one of {list(SCOPES)}")
    fallback = op.get("fallback")
    if fallback is not None and (fallback not in FALLBACKS or method != "GET"):
        raise RouteConfigError(f"{where}.fallback: must be one of {list(FALLBACKS)}, on a GET")
    return Operation(method, op_path, scope, fallback)


def _route(
    name: str, entry: Any, defaults: dict, upstreams: dict[str, Upstream], where: str
) -> Route:
    if not isinstance(entry, dict):
        raise RouteConfigError(f"{where}: must be a mapping with prefix, upstream, operations")
    for key in entry:
        if key not in ("prefix", "upstream", "policy", "operations"):
            raise RouteConfigError(
                f"{where}.{key}: unknown key; a route has prefix, upstream, policy, operations"
                + (
                    " (timeouts now live in policy.deadline and policy.attempt_timeout)"
                    if key == "timeout_s"
                    else ""
                )
            )
    prefix = entry.get("prefix")
    if not isinstance(prefix, str) or not prefix.startswith("/") or prefix.endswith("/"):
        raise RouteConfigError(f"{where}.prefix: must start with '/' and not end with one")
    upstream = entry.get("upstream")
    if upstream not in upstreams:
        raise RouteConfigError(
            f"{where}.upstream: {upstream!r} is not an upstream; define it under `upstreams:` "
            "or name a port of servoscope.toml [ports]"
        )
    policy = _mapping(entry.get("policy"), f"{where}.policy")
    known = {*ROUTE_POLICY, "max_body_bytes"}
    for key in policy:
        if key not in known:
            raise RouteConfigError(
                f"{where}.policy.{key}: unknown policy; known policies are {sorted(known)}"
            )
    options = {
        key: parse(cls, policy.get(key), f"{where}.policy.{key}", defaults.get(key))
        for key, cls in ROUTE_POLICY.items()
    }
    max_body = policy.get("max_body_bytes", defaults.get("max_body_bytes", DEFAULT_MAX_BODY))
    if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 0:
        raise RouteConfigError(f"{where}.policy.max_body_bytes: must be a whole number >= 0")
    raw_ops = entry.get("operations")
    if not isinstance(raw_ops, list) or not raw_ops:
        raise RouteConfigError(f"{where}.operations: list at least one operation")
    operations = tuple(_operation(op, f"{where}.operations[{i}]") for i, op in enumerate(raw_ops))
    return Route(name, prefix, upstream, operations, max_body_bytes=max_body, **options)


def load_routes(path: Path, settings: Settings) -> RouteTable:
    """Read and validate the route table; raises :class:`RouteConfigError` naming the entry."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RouteConfigError(f"{path}: cannot read the route table: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("routes"), dict):
        raise RouteConfigError(f"{path}: expected a top-level `routes:` mapping of name -> route")
    for key in data:
        if key not in ("defaults", "upstreams", "routes"):
            raise RouteConfigError(
                f"{path}: {key}: unknown top-level key; use defaults, upstreams, routes"
            )
    try:
        raw_defaults = _mapping(data.get("defaults"), f"{path}: defaults")
        defaults: dict[str, Any] = {
            key: parse(cls, raw_defaults.get(key), f"{path}: defaults.{key}")
            for key, cls in {**ROUTE_POLICY, **UPSTREAM_POLICY}.items()
        }
        if "max_body_bytes" in raw_defaults:
            defaults["max_body_bytes"] = raw_defaults["max_body_bytes"]
        upstreams = {
            name: _upstream(name, entry, defaults, settings, f"{path}: upstreams.{name}")
            for name, entry in _mapping(data.get("upstreams"), f"{path}: upstreams").items()
        }
        # A route may name a port of servoscope.toml directly: one instance, default policy.
        for entry in data["routes"].values():
            name = entry.get("upstream") if isinstance(entry, dict) else None
            if (
                isinstance(name, str)
                and name not in upstreams
                and name in settings.sections.get("ports", {})
            ):
                upstreams[name] = _upstream(name, None, defaults, settings, f"{path}: {name}")
        routes = tuple(
            _route(name, entry, defaults, upstreams, f"{path}: routes.{name}")
            for name, entry in data["routes"].items()
        )
    except PolicyError as exc:
        raise RouteConfigError(str(exc)) from None
    seen: dict[tuple[str, str], str] = {}
    for route in routes:
        for op in route.operations:
            key = (op.method, route.prefix + op.path)
            if key in seen:
                raise RouteConfigError(
                    f"{path}: routes.{route.name}: {op.method} {key[1]} is already routed by "
                    f"routes.{seen[key]}; remove one of them"
                )
            seen[key] = route.name
    return RouteTable(routes, upstreams, path)


if __name__ == "__main__":
    # ``python -m gateway.routing [routes.yaml]``: check a table before sending SIGHUP,
    # and see each route's pipeline, outermost stage first, with what is switched off.
    import sys

    from gateway.stages import describe
    from servoscope.settings import load

    settings = load()
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else settings.path("gateway", "routes_file")
    try:
        checked = load_routes(target, settings)
    except RouteConfigError as exc:
        sys.exit(f"invalid: {exc}")
    operations = sum(len(route.operations) for route in checked.routes)
    print(f"{target}: {len(checked.routes)} routes, {operations} operations, OK")
    for route in checked.routes:
        print(
            f"  {route.name} ({route.prefix}): {describe(route, checked.upstreams[route.upstream])}"
        )
