"""The telemetry logger's HTTP contract: the source of its ``/openapi.json``, of the
gateway's description of ``/api/telemetry``, and of its query parameters' checks."""

from __future__ import annotations

from services.telemetry.config import TelemetryConfig
from services.telemetry.ingest import EVENT_KINDS
from services.telemetry.samples import ANGLE_LIMIT, FIELDS, MAX_CHANNEL, TS_MAX, TS_MIN
from servoscope.contract import Operation, Param

MAX_PAGE = 1000
CHANNEL = Param(
    "channel", "query", {"type": "integer", "minimum": 0, "maximum": MAX_CHANNEL}, required=False
)
LIMIT = Param(
    "limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 100}, False
)
CURSOR = Param(
    "cursor",
    "query",
    {"type": "integer", "minimum": 0, "maximum": 2**62, "default": 0},
    required=False,
    description="next_cursor of the previous page",
)
SINCE = Param("since", "query", {"type": "number", "minimum": 0}, False, "Unix time, seconds")
UNTIL = Param("until", "query", {"type": "number", "minimum": 0}, False, "Unix time, seconds")
EVENT_KIND = Param(
    "kind", "query", {"type": "string", "enum": sorted(set().union(*EVENT_KINDS.values()))}, False
)
EVENT_SUBJECT = Param(
    "subject",
    "query",
    {"type": "string", "minLength": 1, "maxLength": 200},
    required=False,
    description="a move id, or the device (its serial port or URL)",
)
EVENT_PARAMETERS = {"kind", "subject", "channel", "since", "until", "limit", "cursor"}


def _page(name: str) -> dict[str, object]:
    """The schema of one page of a listing: its rows and the cursor of the next page."""
    return {
        "type": "object",
        "required": [name, "next_cursor"],
        "properties": {name: {"type": "array"}, "next_cursor": {"type": ["string", "null"]}},
    }


def operations(config: TelemetryConfig) -> list[Operation]:
    angle = {"type": "number", "minimum": -ANGLE_LIMIT, "maximum": ANGLE_LIMIT}
    sample = {
        "type": "object",
        "required": sorted(FIELDS),
        "additionalProperties": False,
        "properties": {
            "channel": {"type": "integer", "minimum": 0, "maximum": MAX_CHANNEL},
            "angle": angle,
            "target_angle": angle,
            "ts": {"type": "number", "minimum": TS_MIN, "maximum": TS_MAX},
        },
    }
    return [
        Operation(
            "POST",
            "/samples",
            "store a batch of samples, all or none (202 once durable); an `Idempotency-Key` "
            "header (1-255 characters, new per batch) makes a resent batch stored once",
            {
                202: "stored (or replayed for a repeated Idempotency-Key)",
                422: "the batch or some of its samples are invalid (`errors` lists each), or "
                "the Idempotency-Key was used for another batch",
            },
            body={"type": "array", "minItems": 1, "maxItems": config.max_batch, "items": sample},
            returns={
                "type": "object",
                "required": ["accepted"],
                "properties": {"accepted": {"type": "integer"}},
            },
        ),
        Operation(
            "GET",
            "/samples",
            "stored samples, oldest first, a page at a time",
            {200: "a page of samples and the cursor of the next (null at the end)"},
            params=(CHANNEL, SINCE, UNTIL, LIMIT, CURSOR),
            returns=_page("samples"),
        ),
        Operation(
            "GET",
            "/events",
            "device and move events from the streams, in the order they were stored; an "
            "unknown query parameter is refused",
            {200: "a page of events and the cursor of the next (null at the end)"},
            params=(EVENT_KIND, EVENT_SUBJECT, CHANNEL, SINCE, UNTIL, LIMIT, CURSOR),
            returns=_page("events"),
        ),
        Operation(
            "GET",
            "/stats",
            "how many samples are stored, per channel, and the retention in force",
            {200: "the figures"},
            returns={"type": "object", "required": ["samples", "retention"]},
        ),
    ]
