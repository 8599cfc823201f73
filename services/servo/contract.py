"""The servo controller's HTTP contract: the source of its ``/openapi.json`` and of the
gateway's description of ``/api/servo``, built from the same configuration the routes
validate with (channel count, each channel's calibrated angle and its limits)."""

from __future__ import annotations

from typing import Any

from services.servo.config import ServoConfig
from servoscope.contract import Operation, Param

DEVICE_ANSWERS = {
    503: "the device is disconnected or the line is busy (Retry-After)",
    502: "the device answered garbage or reported errors",
    504: "the device did not answer in time",
}
IDEMPOTENCY_ANSWERS = {
    400: "the Idempotency-Key is not 1-255 printable ASCII characters",
    409: "a request with this Idempotency-Key is still in progress",
    422: "the Idempotency-Key is malformed or was used for a different request",
}


def _widest(config: ServoConfig, attribute: str) -> tuple[float, float]:
    """The union of every channel's range: what some channel accepts."""
    ranges = [getattr(config.channel(c), attribute) for c in range(config.channel_count)]
    return min(low for low, _ in ranges), max(high for _, high in ranges)


def channel_param(config: ServoConfig) -> Param:
    """``?channel=``: one of the configured channels."""
    schema = {"type": "integer", "minimum": 0, "maximum": config.channel_count - 1}
    return Param("channel", "query", schema)


def operations(config: ServoConfig) -> list[Operation]:
    channel = channel_param(config).schema
    low, high = _widest(config, "angle_range")
    speed_low, speed_high = _widest(config, "speed_range")
    accel_low, accel_high = _widest(config, "acceleration_range")
    reading: dict[str, Any] = {
        "type": "object",
        "required": ["channel", "angle"],
        "properties": {
            "channel": {"type": "integer"},
            "angle": {"type": "number"},
            "stale": {"type": "boolean"},
        },
    }
    return [
        Operation(
            "POST",
            "/set-position",
            "move one channel to an angle; an `Idempotency-Key` header (1-255 printable ASCII "
            "characters, new per command) makes a retried command apply once",
            {200: "the command was written to the device", **DEVICE_ANSWERS, **IDEMPOTENCY_ANSWERS},
            body={
                "type": "object",
                "required": ["channel", "angle"],
                "additionalProperties": False,
                "properties": {
                    "channel": channel,
                    "angle": {"type": "number", "minimum": low, "maximum": high},
                    "speed": {"type": "integer", "minimum": speed_low, "maximum": speed_high},
                    "acceleration": {
                        "type": "integer",
                        "minimum": accel_low,
                        "maximum": accel_high,
                    },
                },
            },
            returns={
                "type": "object",
                "required": ["channel", "angle", "pulse_us"],
                "properties": {
                    "channel": {"type": "integer"},
                    "angle": {"type": "number"},
                    "pulse_us": {"type": "number"},
                },
            },
        ),
        Operation(
            "GET",
            "/current-angle",
            "the latest sampled angle of one channel",
            {200: "the reading (`stale` when old)", 503: "no reading yet (Retry-After)"},
            params=(channel_param(config),),
            returns=reading,
        ),
        Operation(
            "GET",
            "/status",
            "the device's state, its error register and every channel's reading",
            {200: "the device's status"},
            returns={"type": "object", "required": ["channels"]},
        ),
        Operation(
            "POST",
            "/home",
            "every channel to its home position (`Idempotency-Key` as for set-position)",
            {200: "the targets set", **DEVICE_ANSWERS, **IDEMPOTENCY_ANSWERS},
            body={"type": "object", "additionalProperties": False, "maxProperties": 0},
            body_required=False,
            returns={"type": "object", "required": ["targets"]},
        ),
    ]
