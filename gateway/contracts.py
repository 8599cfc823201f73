"""The upstreams' contracts, as the gateway reads them: per route operation, what the
service behind it declares (its path parameters' patterns, bodies, answers).

Each stack service keeps its contract in ``services/<name>/contract.py``, built from the
same settings file the gateway reads; an upstream that is not a stack service (an
``http://`` URL in routes.yaml) or an operation its service does not declare yet is
described from the route table alone (:func:`servoscope.contract.undeclared`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.routing import RouteTable
from services.motion import config as motion_config
from services.motion import contract as motion
from services.servo import config as servo_config
from services.servo import contract as servo
from services.state import config as state_config
from services.state import contract as state
from services.telemetry import config as telemetry_config
from services.telemetry import contract as telemetry
from servoscope.contract import Operation
from servoscope.settings import Settings

# (route name, method, path below the prefix) -> the upstream's declaration
Contracts = dict[tuple[str, str, str], Operation]

# upstream name (a port of servoscope.toml) -> (config loader, operations)
SERVICES: dict[str, tuple[Callable[[Settings], Any], Callable[[Any], list[Operation]]]] = {
    "servo": (lambda s: servo_config.load_config(s, device_needed=False), servo.operations),
    "motion": (motion_config.load_config, motion.operations),
    "telemetry": (telemetry_config.load_config, telemetry.operations),
    "state": (state_config.load_config, state.operations),
}


def load(table: RouteTable, settings: Settings) -> Contracts:
    declared: dict[str, dict[tuple[str, str], Operation]] = {}
    for name, (load_config, operations) in SERVICES.items():
        if any(route.upstream == name for route in table.routes):
            declared[name] = {op.key: op for op in operations(load_config(settings))}
    return {
        (route.name, op.method, op.path): found
        for route in table.routes
        for op in route.operations
        if (found := declared.get(route.upstream, {}).get((op.method, op.path))) is not None
    }
