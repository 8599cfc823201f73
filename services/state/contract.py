"""device-state's HTTP contract: the source of its ``/openapi.json`` and of the gateway's
description of ``/api/state``."""

from __future__ import annotations

from services.state.config import StateConfig
from servoscope.contract import Operation

SECTION = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"enum": ["ok", "unavailable"]}, "reason": {"type": "string"}},
}


def operations(config: StateConfig) -> list[Operation]:
    return [
        Operation(
            "GET",
            "/state",
            "the whole device: servo status, active moves, recent samples; a section whose "
            "service fails is `unavailable` on its own (last good data and its age)",
            {200: "every section, each ok or unavailable"},
            returns={
                "type": "object",
                "required": ["generated_at", "servo", "motion", "telemetry"],
                "properties": {
                    "generated_at": {"type": "number"},
                    "servo": SECTION,
                    "motion": SECTION,
                    "telemetry": SECTION,
                },
            },
        )
    ]
