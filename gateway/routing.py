"""The route table: which public paths go to which upstream, with which scope.

Loaded from ``gateway/routes.yaml`` and validated at start-up; a mistake names
the file and the route it is in, so the gateway refuses to start rather than
serve a half-read table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from gateway.auth import SCOPES
from servoscope.settings import Settings

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


class RouteConfigError(ValueError):
    """The route table is invalid; the message names the file, route and fix."""


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # below the prefix, e.g. /moves/{id}
    scope: str

    @property
    def flask_rule_tail(self) -> str:
        return re.sub(r"\{(\w+)\}", r"<\1>", self.path)


@dataclass(frozen=True)
class Route:
    name: str
    prefix: str
    upstream: str
    upstream_url: str
    timeout_s: float
    operations: tuple[Operation, ...]


def load_routes(path: Path, settings: Settings) -> list[Route]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RouteConfigError(f"{path}: cannot read the route table: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("routes"), dict):
        raise RouteConfigError(f"{path}: expected a top-level `routes:` mapping of name -> route")
    routes = []
    for name, entry in data["routes"].items():
        where = f"{path}: routes.{name}"
        if not isinstance(entry, dict):
            raise RouteConfigError(f"{where}: must be a mapping with prefix, upstream, operations")
        prefix = entry.get("prefix")
        if not isinstance(prefix, str) or not prefix.startswith("/") or prefix.endswith("/"):
            raise RouteConfigError(f"{where}.prefix: must start with '/' and not end with one")
        upstream = entry.get("upstream")
        if upstream not in settings.sections.get("ports", {}):
            raise RouteConfigError(
                f"{where}.upstream: {upstream!r} is not a port name in {settings.source} [ports]"
            )
        timeout = entry.get("timeout_s", 5.0)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise RouteConfigError(f"{where}.timeout_s: must be a positive number of seconds")
        operations = []
        for index, op in enumerate(entry.get("operations") or []):
            op_where = f"{where}.operations[{index}]"
            if not isinstance(op, dict):
                raise RouteConfigError(f"{op_where}: must be {{method, path, scope}}")
            method = str(op.get("method", "")).upper()
            if method not in METHODS:
                raise RouteConfigError(f"{op_where}.method: must be one of {sorted(METHODS)}")
            op_path = op.get("path")
            if not isinstance(op_path, str) or not op_path.startswith("/"):
                raise RouteConfigError(f"{op_where}.path: must start with '/'")
            scope = op.get("scope")
            if scope not in SCOPES:
                raise RouteConfigError(f"{op_where}.scope: must be one of {list(SCOPES)}")
            operations.append(Operation(method, op_path, scope))
        if not operations:
            raise RouteConfigError(f"{where}.operations: list at least one operation")
        routes.append(
            Route(
                name=name,
                prefix=prefix,
                upstream=upstream,
                upstream_url=settings.url(upstream),
                timeout_s=float(timeout),
                operations=tuple(operations),
            )
        )
    return routes
