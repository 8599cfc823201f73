"""The simulator's fault modes: which exist, their checked parameters, and what a
garbled line does to a reply. The device (:mod:`.maestro`) applies them."""

from __future__ import annotations

import random
from typing import Any

FAULT_MODES = ("unplug", "stall", "slow", "garble", "error")


def _number(mode: str, name: str, value: Any, low: float, high: float) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not low < value <= high:
        raise ValueError(
            f"{mode}: {name} must be a number with {low} < {name} <= {high}, got {value!r}"
        )
    return float(value)


def validate_fault(mode: str, params: dict[str, Any]) -> dict[str, Any]:
    """Return the complete, checked parameters of fault ``mode``.

    Raises ValueError naming the bad mode or parameter and what is allowed.

    >>> validate_fault("slow", {})
    {'latency_s': 0.2}
    >>> validate_fault("garble", {"probability": 2})
    Traceback (most recent call last):
    ...
    ValueError: garble: probability must be a number with 0 < probability <= 1, got 2
    """
    allowed: dict[str, tuple[str, ...]] = {
        "unplug": (),
        "stall": (),
        "slow": ("latency_s",),
        "garble": ("probability",),
        "error": ("bits", "sticky"),
    }
    if mode not in allowed:
        raise ValueError(f"unknown fault mode {mode!r}; use one of {', '.join(FAULT_MODES)}")
    unknown = sorted(set(params) - set(allowed[mode]))
    if unknown:
        takes = ", ".join(allowed[mode]) or "no parameters"
        raise ValueError(f"{mode}: unknown parameter {unknown[0]!r}; {mode} takes {takes}")
    if mode == "slow":
        return {"latency_s": _number(mode, "latency_s", params.get("latency_s", 0.2), 0, 30)}
    if mode == "garble":
        return {"probability": _number(mode, "probability", params.get("probability", 1.0), 0, 1)}
    if mode == "error":
        bits = params.get("bits")
        if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= 0xFFFF:
            raise ValueError(
                f"error: bits must be an integer in 1..65535 (see protocol.ErrorBits), got {bits!r}"
            )
        sticky = params.get("sticky", False)
        if not isinstance(sticky, bool):
            raise ValueError(f"error: sticky must be true or false, got {sticky!r}")
        return {"bits": bits, "sticky": sticky}
    return {}


def garble(reply: bytes, probability: float, rng: random.Random) -> bytes:
    """``reply`` with each byte XORed with a random non-zero mask at ``probability``."""
    return bytes(
        byte ^ rng.randint(1, 255) if rng.random() < probability else byte for byte in reply
    )
