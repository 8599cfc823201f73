"""What the poller last read from the device: positions and motion, with a timestamp.

Reads (``GET /current-angle``, ``GET /status``) are served from the latest
:class:`Snapshot`, so they never queue behind commands on the wire; ``stale``
tells the caller when that picture is too old to trust.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import SpanContext

from services.servo.calibration import Calibration
from services.servo.device_errors import iso_time


@dataclass(frozen=True)
class Target:
    """A target the service commanded (the Maestro has no command to read one back)."""

    quarter_us: int
    angle: float
    # The span of the command that set it: the samples it causes link back to it.
    cause: SpanContext | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Snapshot:
    positions: tuple[int, ...]  # quarter-us per channel; 0 = pulses off
    previous: tuple[int, ...]  # the positions one poll earlier
    any_moving: bool  # Get Moving State covers the whole device
    sampled_at: float  # wall clock, for people
    sampled_mono: float  # monotonic clock, for staleness


def channel_json(
    channel: int,
    snapshot: Snapshot,
    calibration: Calibration,
    target: Target | None,
    stale: bool,
) -> dict[str, Any]:
    """The ``GET /current-angle`` body for one channel."""
    position = snapshot.positions[channel]
    angle = round(calibration.quarter_us_to_angle(position), 3) if position else None
    # Get Moving State covers every channel; a known target, or else a change since
    # the previous poll, tells which channel is the one moving.
    if target is not None:
        moving = snapshot.any_moving and position != target.quarter_us
    else:
        moving = snapshot.any_moving and position != snapshot.previous[channel]
    return {
        "channel": channel,
        "angle": angle,
        "pulse_us": position / 4,
        "target_angle": target.angle if target else None,
        "moving": moving,
        "sampled_at": iso_time(snapshot.sampled_at),
        "stale": stale,
    }
