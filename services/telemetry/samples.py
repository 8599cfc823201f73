"""Validating a batch of samples: all good, or a 422 listing every bad index and field.

A batch is stored whole or not at all, so one bad sample rejects the batch and the
answer lists each problem, letting the producer fix them in one round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from servoscope.jsonbody import integer, number, reject_unknown
from servoscope.problems import Problem

FIELDS = {"channel", "angle", "target_angle", "ts"}
MAX_CHANNEL = 23
ANGLE_LIMIT = 360.0
# Unix seconds: from 2000-01-01 to 2200-01-01; anything else is a unit mistake.
TS_MIN, TS_MAX = 946_684_800.0, 7_258_118_400.0


@dataclass(frozen=True)
class Sample:
    channel: int
    angle: float
    target_angle: float
    ts: float


def sample_from(entry: Any) -> Sample:
    """One validated sample, or a 422 problem naming the first bad field."""
    if not isinstance(entry, dict):
        raise Problem(
            422,
            "Invalid Field",
            f"each sample must be an object with {sorted(FIELDS)}",
            slug="invalid-field",
            field=None,
        )
    reject_unknown(entry, FIELDS)
    return Sample(
        channel=integer(entry, "channel", minimum=0, maximum=MAX_CHANNEL),
        angle=number(entry, "angle", minimum=-ANGLE_LIMIT, maximum=ANGLE_LIMIT),
        target_angle=number(entry, "target_angle", minimum=-ANGLE_LIMIT, maximum=ANGLE_LIMIT),
        ts=number(entry, "ts", minimum=TS_MIN, maximum=TS_MAX),
    )


def parse_batch(body: Any, max_batch: int) -> list[Sample]:
    """Every sample of ``body`` (a JSON array), or a 422 problem listing all errors."""
    if not isinstance(body, list):
        raise Problem(
            422,
            "Invalid Batch",
            f"send a JSON array of 1 to {max_batch} samples; got {type(body).__name__}",
            slug="invalid-batch",
        )
    if not 1 <= len(body) <= max_batch:
        raise Problem(
            422,
            "Invalid Batch",
            f"a batch holds 1 to {max_batch} samples; got {len(body)}",
            slug="invalid-batch",
        )
    samples: list[Sample] = []
    errors: list[dict[str, Any]] = []
    for index, entry in enumerate(body):
        try:
            samples.append(sample_from(entry))
        except Problem as problem:
            errors.append(
                {"index": index, "field": problem.extensions.get("field"), "detail": problem.detail}
            )
    if errors:
        raise Problem(
            422,
            "Invalid Samples",
            f"{len(errors)} of {len(body)} samples are invalid; nothing was stored",
            slug="invalid-samples",
            errors=errors,
        )
    return samples
