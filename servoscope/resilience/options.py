"""Typed options of the resilience stages: frozen, with defaults, checked where built.

Every stage of :mod:`servoscope.resilience.pipeline` takes one of these dataclasses; the
gateway builds them from its route table, the motion planner and device-state from their
own sections of servoscope.toml. ``enabled`` switches a stage off (chaos experiments run a
control with the protection off). A value out of range is refused when the options are
built (:class:`PolicyError` names the option), and :func:`parse` builds options from a
YAML mapping, refusing unknown keys and wrong types with a message naming the exact
entry, e.g. ``gateway/routes.yaml: upstreams.servo.breaker.failures: must be greater than 0``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar, get_type_hints


class PolicyError(ValueError):
    """An option has the wrong name, type or range; the message says where."""


def positive(value: float, where: str) -> None:
    if value <= 0:
        raise PolicyError(f"{where}: must be greater than 0; got {value!r}")


@dataclass(frozen=True)
class DeadlineOptions:
    """The whole call, every retry included, must end within ``total_s``."""

    enabled: bool = True
    total_s: float = 5.0

    def __post_init__(self) -> None:
        positive(self.total_s, "total_s")


@dataclass(frozen=True)
class BulkheadOptions:
    """At most ``max_concurrent`` calls; wait at most ``max_wait_s`` for a slot; one caller
    holds at most ``max_share`` of the slots, so one client's burst cannot take the slots
    another client's requests need."""

    enabled: bool = True
    max_concurrent: int = 8
    max_wait_s: float = 0.0
    max_share: float = 1.0

    def __post_init__(self) -> None:
        positive(self.max_concurrent, "max_concurrent")
        if not 0 < self.max_share <= 1:
            raise PolicyError(
                f"max_share: a fraction of the slots, 0 < x <= 1; got {self.max_share!r}"
            )

    @property
    def per_key(self) -> int:
        return max(1, int(self.max_concurrent * self.max_share))


@dataclass(frozen=True)
class RetryOptions:
    """Exponential backoff with full jitter (none when ``backoff_max_s`` is 0), inside a
    retry budget when the caller has one."""

    enabled: bool = True
    max_attempts: int = 3
    backoff_base_s: float = 0.05
    backoff_max_s: float = 1.0
    retry_after_max_s: float = 2.0  # a longer Retry-After is not worth waiting for
    honour_retry_after: bool = True  # off: the backoff alone decides (none: at once)

    def __post_init__(self) -> None:
        positive(self.max_attempts, "max_attempts")


@dataclass(frozen=True)
class RetryBudgetOptions:
    """Retries may add at most ``ratio`` of the requests (or ``floor``) per window."""

    enabled: bool = True
    ratio: float = 0.2
    floor: int = 3
    window_s: int = 10

    def __post_init__(self) -> None:
        positive(self.window_s, "window_s")


@dataclass(frozen=True)
class AttemptTimeoutOptions:
    """Each attempt's connect and read timeouts (both capped by the deadline, if any)."""

    enabled: bool = True
    connect_s: float = 0.5
    read_s: float = 2.0


T = TypeVar("T")


def _check(value: Any, kind: type, where: str) -> Any:
    if kind is bool:
        if not isinstance(value, bool):
            raise PolicyError(f"{where}: must be true or false; got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise PolicyError(f"{where}: must be a whole number >= 0; got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise PolicyError(f"{where}: must be a number >= 0; got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise PolicyError(f"{where}: must be a string; got {value!r}")
    return value


def parse(cls: type[T], data: Any, where: str, base: T | None = None) -> T:
    """Options of type ``cls`` from ``data``, each missing key taken from ``base``."""
    start = base if base is not None else cls()
    if data is None:
        return start
    if not isinstance(data, dict):
        raise PolicyError(f"{where}: must be a mapping of option: value")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    values = {}
    for key, value in data.items():
        if key not in names:
            raise PolicyError(f"{where}.{key}: unknown option; known options are {names}")
        values[key] = _check(value, hints[key], f"{where}.{key}")
    try:
        return dataclasses.replace(start, **values)  # type: ignore[type-var]
    except PolicyError as exc:  # out of range: say where, as for the checks above
        raise PolicyError(f"{where}.{exc}") from None
