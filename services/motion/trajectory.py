"""Point-to-point trajectories for one servo channel: pure maths, no I/O.

Two profiles, each planned either for a given duration or as fast as velocity and
acceleration limits allow:

- ``trapezoidal``: constant acceleration, cruise, constant deceleration (a triangle
  when the move is too short to reach cruise speed). Velocity is continuous,
  acceleration steps.
- ``minimum-jerk``: the fifth-order polynomial that minimises the integral of squared
  jerk (Flash & Hogan, 1985); velocity and acceleration are zero at both ends, so the
  motion starts and stops without a kick.

    >>> move = plan("minimum-jerk", start=90.0, target=150.0, duration_s=2.0)
    >>> round(move.position(1.0), 6), move.position(2.0)
    (120.0, 150.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PROFILES = ("trapezoidal", "minimum-jerk")

# Peak |velocity| and |acceleration| of the minimum-jerk curve per unit distance and time.
MIN_JERK_PEAK_VELOCITY = 1.875  # times distance / duration
MIN_JERK_PEAK_ACCELERATION = 10 / math.sqrt(3)  # times distance / duration²
# A trapezoid planned for a duration spends a third of it accelerating and a third braking.
TRAPEZOID_RAMP_FRACTION = 1 / 3
# Far below a servo's resolution (about 0.05 degrees): such a move is no move.
MIN_DISTANCE = 1e-6


class PlanningError(ValueError):
    """The requested move cannot be planned; the message says what to change."""


@dataclass(frozen=True)
class Trajectory:
    """A planned move from ``start`` to ``target`` degrees over ``duration_s`` seconds."""

    profile: str
    start: float
    target: float
    duration_s: float
    ramp_s: float = 0.0  # trapezoidal only: time spent accelerating (= braking)

    @property
    def distance(self) -> float:
        return self.target - self.start

    def _progress(self, t: float) -> tuple[float, float, float]:
        """Normalised position, velocity and acceleration (per unit distance) at ``t``."""
        duration = self.duration_s
        if duration == 0.0 or t >= duration:
            return 1.0, 0.0, 0.0
        if t <= 0.0:
            return 0.0, 0.0, 0.0
        if self.profile == "minimum-jerk":
            tau = t / duration
            s = tau**3 * (10 - 15 * tau + 6 * tau**2)
            ds = 30 * tau**2 * (1 - tau) ** 2 / duration
            dds = 60 * tau * (1 - tau) * (1 - 2 * tau) / duration**2
            return s, ds, dds
        ramp = self.ramp_s
        peak = 1.0 / (duration - ramp)  # cruise velocity, normalised
        accel = peak / ramp
        if t < ramp:
            return 0.5 * accel * t * t, accel * t, accel
        if t <= duration - ramp:
            return 0.5 * accel * ramp * ramp + peak * (t - ramp), peak, 0.0
        left = duration - t
        return 1.0 - 0.5 * accel * left * left, accel * left, -accel

    def position(self, t: float) -> float:
        if t >= self.duration_s:
            return self.target  # exactly: start + distance may round away from it
        return self.start + self.distance * self._progress(t)[0]

    def velocity(self, t: float) -> float:
        return self.distance * self._progress(t)[1]

    def acceleration(self, t: float) -> float:
        return self.distance * self._progress(t)[2]

    def setpoints(self, rate_hz: float) -> list[tuple[float, float]]:
        """``(t, angle)`` at a fixed rate, always ending exactly on the target."""
        if rate_hz <= 0:
            raise PlanningError(f"rate_hz must be positive; got {rate_hz}")
        steps = max(1, math.ceil(self.duration_s * rate_hz - 1e-9))
        period = self.duration_s / steps
        return [(i * period, self.position(i * period)) for i in range(1, steps)] + [
            (self.duration_s, self.target)
        ]


def _positive(name: str, value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise PlanningError(f"{name} must be a positive number; got {value}")
    return value


def plan(
    profile: str,
    *,
    start: float,
    target: float,
    duration_s: float | None = None,
    max_velocity: float | None = None,
    max_acceleration: float | None = None,
) -> Trajectory:
    """Plan a move for ``duration_s``, or the fastest one within the given limits.

    Give either ``duration_s`` or both ``max_velocity`` (deg/s) and ``max_acceleration``
    (deg/s²).
    """
    if profile not in PROFILES:
        raise PlanningError(f"profile must be one of {list(PROFILES)}; got {profile!r}")
    _positive("duration_s", duration_s)
    _positive("max_velocity", max_velocity)
    _positive("max_acceleration", max_acceleration)
    distance = abs(target - start)
    if duration_s is not None:
        if max_velocity is not None or max_acceleration is not None:
            raise PlanningError("give duration_s or max_velocity/max_acceleration, not both")
        ramp = duration_s * TRAPEZOID_RAMP_FRACTION if profile == "trapezoidal" else 0.0
        return Trajectory(profile, start, target, duration_s, ramp)
    if max_velocity is None or max_acceleration is None:
        raise PlanningError("give duration_s, or both max_velocity and max_acceleration")
    if distance < MIN_DISTANCE:
        return Trajectory(profile, start, target, 0.0)
    if profile == "minimum-jerk":
        duration = max(
            MIN_JERK_PEAK_VELOCITY * distance / max_velocity,
            math.sqrt(MIN_JERK_PEAK_ACCELERATION * distance / max_acceleration),
        )
        return Trajectory(profile, start, target, duration)
    ramp = max_velocity / max_acceleration
    if max_acceleration * ramp * ramp >= distance:  # never reaches cruise: a triangle
        ramp = math.sqrt(distance / max_acceleration)
        return Trajectory(profile, start, target, 2 * ramp, ramp)
    return Trajectory(profile, start, target, distance / max_velocity + ramp, ramp)
