"""The public routes chaos traffic exercises, named once for every experiment.

An experiment lists route names; the traffic loop and the probes look them up here.
Commands carry what makes their effects checkable afterwards:

- ``set-position`` on :data:`COMMAND_CHANNEL` sends a new angle with every request (a new
  ``Idempotency-Key`` each), so the simulator's log of targets shows any command that
  reached the device twice;
- ``telemetry-samples`` posts batches on :data:`SAMPLE_CHANNEL` with unique timestamps, so
  every sample answered 202 can be looked up in the logger afterwards.
"""

from __future__ import annotations

from typing import Any

COMMAND_CHANNEL = 5  # polled by the servo controller, moved by nobody else
SAMPLE_CHANNEL = 23  # the servo controller publishes channels 0..5 only
SAMPLES_PER_BATCH = 5
ANGLE_STEP = 0.1  # degrees: about 2.2 quarter-microseconds apart with the default calibration
ANGLE_LOW, ANGLE_HIGH = 10.0, 170.0

ROUTES: dict[str, dict[str, Any]] = {
    "current-angle": {"method": "GET", "path": "/api/servo/current-angle?channel=0"},
    "set-position": {"method": "POST", "path": "/api/servo/set-position", "kind": "command"},
    "moves": {"method": "GET", "path": "/api/motion/moves"},
    "telemetry-stats": {"method": "GET", "path": "/api/telemetry/stats"},
    "telemetry-samples": {"method": "POST", "path": "/api/telemetry/samples", "kind": "samples"},
    "state": {"method": "GET", "path": "/api/state"},
}


def command_angle(sequence: int) -> float:
    """The ``sequence``-th command's angle: distinct for 1,600 commands in a row."""
    span = int((ANGLE_HIGH - ANGLE_LOW) / ANGLE_STEP)
    return ANGLE_LOW + (sequence % span) * ANGLE_STEP


def command_body(sequence: int) -> dict[str, Any]:
    return {"channel": COMMAND_CHANNEL, "angle": command_angle(sequence)}


def samples_body(base_ts: float, sequence: int) -> list[dict[str, Any]]:
    first = sequence * SAMPLES_PER_BATCH
    return [
        {
            "channel": SAMPLE_CHANNEL,
            "angle": 90.0,
            "target_angle": 90.0,
            "ts": base_ts + (first + index) / 1000,
        }
        for index in range(SAMPLES_PER_BATCH)
    ]


def lookup(names: list[str]) -> list[dict[str, Any]]:
    unknown = [name for name in names if name not in ROUTES]
    if unknown:
        raise ValueError(f"unknown chaos route(s) {unknown}; known: {sorted(ROUTES)}")
    return [{"name": name, **ROUTES[name]} for name in names]
