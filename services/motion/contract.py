"""The motion planner's HTTP contract: the source of its ``/openapi.json``, of the
gateway's description of ``/api/motion``, and of the limits its routes enforce."""

from __future__ import annotations

import math
from typing import Any

from services.motion.config import MotionConfig
from services.motion.trajectory import MIN_JERK_PEAK_VELOCITY, PROFILES
from servoscope.contract import Operation, Param

MOVE_ID = Param(
    "id",
    "path",
    {"type": "string", "pattern": "^[0-9a-f]{16}$"},
    description="a move id as POST /moves answered it: 16 lowercase hex digits",
)
MAX_LIMIT = 100_000.0


def slowest_limits(config: MotionConfig) -> tuple[float, float]:
    """The lowest ``max_velocity`` and ``max_acceleration`` a move may name: with them,
    the longest move (end to end, either profile) still ends within ``max_duration_s``,
    so every request the document calls valid can be planned (10 % to spare)."""
    span = config.max_angle - config.min_angle
    velocity = math.ceil(1.1 * MIN_JERK_PEAK_VELOCITY * span / config.max_duration_s)
    return float(velocity), 1.0


def _move_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["id", "channel", "state", "target_angle"],
        "properties": {
            "id": {"type": "string"},
            "channel": {"type": "integer"},
            "state": {"type": "string"},
            "target_angle": {"type": "number"},
        },
    }


def operations(config: MotionConfig) -> list[Operation]:
    velocity, acceleration = slowest_limits(config)
    not_both = [
        {"not": {"required": ["duration_s", limit]}}
        for limit in ("max_velocity", "max_acceleration")
    ]
    move = _move_schema()
    return [
        Operation(
            "POST",
            "/moves",
            "plan a move and stream it to the servo at 50 Hz (Location: the move)",
            {
                202: "the move is planned and running",
                409: "the channel is running another move (`active_move`)",
                503: "the servo controller cannot say where the channel is (Retry-After)",
            },
            body={
                "type": "object",
                "required": ["channel", "target_angle"],
                "additionalProperties": False,
                "properties": {
                    "channel": {"type": "integer", "minimum": 0, "maximum": config.channels - 1},
                    "target_angle": {
                        "type": "number",
                        "minimum": config.min_angle,
                        "maximum": config.max_angle,
                    },
                    "profile": {"enum": list(PROFILES)},
                    "duration_s": {
                        "type": "number",
                        "minimum": 0.02,
                        "maximum": config.max_duration_s,
                    },
                    "max_velocity": {"type": "number", "minimum": velocity, "maximum": MAX_LIMIT},
                    "max_acceleration": {
                        "type": "number",
                        "minimum": acceleration,
                        "maximum": MAX_LIMIT,
                    },
                },
                "allOf": not_both,
            },
            returns=move,
        ),
        Operation(
            "GET",
            "/moves",
            "the moves running now",
            {200: "the active moves"},
            returns={
                "type": "object",
                "required": ["moves"],
                "properties": {"moves": {"type": "array", "items": move}},
            },
        ),
        Operation(
            "GET",
            "/moves/{id}",
            "one move: its state, progress and, when it failed, why",
            {200: "the move", 404: "no move with this id (or it is no longer kept)"},
            params=(MOVE_ID,),
            returns=move,
        ),
        Operation(
            "DELETE",
            "/moves/{id}",
            "cancel a move (its stream stops; the move is kept, state `cancelled`)",
            {200: "the move, cancelled (or already finished)", 404: "no move with this id"},
            params=(MOVE_ID,),
            returns=move,
        ),
    ]
