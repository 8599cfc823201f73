"""Per-channel calibration: pulse width <-> servo angle, pure arithmetic.

Hobby servos map pulse width to angle roughly linearly, but every model (and
every unit) has its own end points, so each channel carries its own
:class:`Calibration`. The defaults are the common 1000..2000 us for 0..180
degrees. A reversed servo is described by swapping the angles
(``min_angle=180, max_angle=0``).

Pulse widths are in microseconds; the Maestro speaks quarter-microseconds, so
:meth:`Calibration.angle_to_quarter_us` and
:meth:`Calibration.quarter_us_to_angle` do the unit change too.

>>> cal = Calibration()
>>> cal.angle_to_us(90)
1500.0
>>> cal.angle_to_quarter_us(90)
6000
>>> cal.quarter_us_to_angle(4000)
0.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["MAX_PULSE_US", "Calibration"]

MAX_PULSE_US = 0x3FFF / 4
"""Largest pulse width the Maestro protocol can carry (a 14-bit quarter-us value)."""


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Calibration:
    """A linear map between pulse width (us) and angle (degrees) for one channel.

    ``min_us`` maps to ``min_angle`` and ``max_us`` to ``max_angle``. Angles
    outside the calibrated range are rejected (the servo would hit its end
    stops); pulse widths read back from the device are converted even when
    slightly outside the range, since the device's own limits may be wider.

    >>> Calibration(min_us=500, max_us=2500, min_angle=-90, max_angle=90).angle_to_us(0)
    1500.0
    """

    min_us: float = 1000.0
    max_us: float = 2000.0
    min_angle: float = 0.0
    max_angle: float = 180.0

    def __post_init__(self) -> None:
        for name in ("min_us", "max_us", "min_angle", "max_angle"):
            _finite(name, getattr(self, name))
        if not 0 < self.min_us < self.max_us <= MAX_PULSE_US:
            raise ValueError(
                f"need 0 < min_us < max_us <= {MAX_PULSE_US}, got min_us={self.min_us}, "
                f"max_us={self.max_us}; swap min_angle and max_angle for a reversed servo"
            )
        if self.min_angle == self.max_angle:
            raise ValueError(
                f"min_angle and max_angle must differ, both are {self.min_angle}; "
                "give the angles the servo reaches at min_us and at max_us"
            )

    @property
    def _slope(self) -> float:
        """Microseconds per degree (negative for a reversed servo)."""
        return (self.max_us - self.min_us) / (self.max_angle - self.min_angle)

    def contains_angle(self, angle: float) -> bool:
        """True if ``angle`` is within the calibrated range (either direction).

        >>> Calibration().contains_angle(180), Calibration().contains_angle(180.5)
        (True, False)
        """
        try:
            angle = _finite("angle", angle)
        except ValueError:
            return False
        low, high = sorted((self.min_angle, self.max_angle))
        return low <= angle <= high

    def angle_to_us(self, angle: float) -> float:
        """Pulse width in microseconds for ``angle``; ValueError outside the range.

        >>> Calibration().angle_to_us(45)
        1250.0
        """
        if not self.contains_angle(angle):
            low, high = sorted((self.min_angle, self.max_angle))
            raise ValueError(f"angle must be a number in {low}..{high} degrees, got {angle!r}")
        return self.min_us + (angle - self.min_angle) * self._slope

    def us_to_angle(self, us: float) -> float:
        """Angle in degrees for a pulse width in microseconds (extrapolates linearly).

        >>> Calibration().us_to_angle(1750)
        135.0
        """
        us = _finite("us", us)
        if us <= 0:
            raise ValueError(
                f"us must be > 0 (0 means the channel is off and has no angle), got {us}"
            )
        return self.min_angle + (us - self.min_us) / self._slope

    def angle_to_quarter_us(self, angle: float) -> int:
        """Maestro target (quarter-us, rounded to the nearest integer) for ``angle``.

        >>> Calibration().angle_to_quarter_us(0.1)
        4002
        """
        return round(self.angle_to_us(angle) * 4)

    def quarter_us_to_angle(self, quarter_us: int) -> float:
        """Angle for a Maestro position in quarter-us (ValueError for 0 = off).

        >>> Calibration().quarter_us_to_angle(8000)
        180.0
        """
        return self.us_to_angle(_finite("quarter_us", quarter_us) / 4)
