"""Planner maths: boundary conditions, limits respected, minimum-jerk smoothness."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.motion.trajectory import PlanningError, plan

angles = st.floats(min_value=0, max_value=180, allow_nan=False)
positive = st.floats(min_value=1.0, max_value=2000.0, allow_nan=False)


def samples(move, count: int = 2001):
    return [move.duration_s * i / (count - 1) for i in range(count)]


@pytest.mark.parametrize("profile", ["trapezoidal", "minimum-jerk"])
@given(start=angles, target=angles, duration=st.floats(min_value=0.05, max_value=10))
def test_moves_start_and_end_at_rest_where_asked(profile, start, target, duration) -> None:
    move = plan(profile, start=start, target=target, duration_s=duration)
    assert move.position(0) == pytest.approx(start)
    assert move.position(duration) == target
    assert move.velocity(0) == 0 and move.velocity(duration) == 0
    points = move.setpoints(50)
    assert points[-1] == (duration, target)
    assert len(points) == max(1, math.ceil(duration * 50 - 1e-9))
    low, high = min(start, target), max(start, target)
    assert all(low - 1e-9 <= angle <= high + 1e-9 for _, angle in points)


@pytest.mark.parametrize("profile", ["trapezoidal", "minimum-jerk"])
@given(start=angles, target=angles, vmax=positive, amax=positive)
def test_limits_are_respected_and_nearly_reached(profile, start, target, vmax, amax) -> None:
    move = plan(profile, start=start, target=target, max_velocity=vmax, max_acceleration=amax)
    assert move.position(move.duration_s) == target
    if abs(target - start) < 1e-6:
        assert move.duration_s == 0
        return
    times = samples(move)
    velocities = [abs(move.velocity(t)) for t in times]
    accelerations = [abs(move.acceleration(t)) for t in times]
    assert max(velocities) <= vmax * (1 + 1e-9)
    assert max(accelerations) <= amax * (1 + 1e-9)
    # Fastest within the limits: one of them is (almost) reached.
    assert max(max(velocities) / vmax, max(accelerations) / amax) > 0.99


def test_trapezoid_cruises_when_the_move_is_long_enough() -> None:
    move = plan("trapezoidal", start=0, target=100, max_velocity=50, max_acceleration=100)
    assert move.ramp_s == pytest.approx(0.5)
    assert move.duration_s == pytest.approx(100 / 50 + 0.5)
    assert move.velocity(1.0) == pytest.approx(50)
    assert move.acceleration(0.25) == pytest.approx(100)
    assert move.acceleration(move.duration_s - 0.25) == pytest.approx(-100)


def test_short_trapezoid_is_a_triangle() -> None:
    move = plan("trapezoidal", start=10, target=14, max_velocity=100, max_acceleration=100)
    assert move.duration_s == pytest.approx(2 * math.sqrt(4 / 100))
    assert max(move.velocity(t) for t in samples(move)) < 100


def test_minimum_jerk_is_smooth() -> None:
    move = plan("minimum-jerk", start=30, target=150, duration_s=2.0)
    assert move.acceleration(0) == 0 and move.acceleration(2.0) == 0
    assert move.position(1.0) == pytest.approx(90)  # symmetric about the midpoint
    assert move.velocity(1.0) == pytest.approx(1.875 * 120 / 2.0)
    # Jerk stays bounded (continuous acceleration): finite differences never jump.
    dt = 1e-3
    accelerations = [move.acceleration(i * dt) for i in range(2001)]
    jerks = [abs(b - a) / dt for a, b in itertools.pairwise(accelerations)]
    assert max(jerks) <= 60 * 120 / 2.0**3 + 1  # analytic peak jerk: 60 * distance / T³


def test_downward_moves_mirror_upward_ones() -> None:
    up = plan("minimum-jerk", start=30, target=150, duration_s=2.0)
    down = plan("minimum-jerk", start=150, target=30, duration_s=2.0)
    for t in (0.3, 1.0, 1.7):
        assert down.position(t) == pytest.approx(180 - up.position(t))


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"profile": "linear", "duration_s": 1}, "profile must be one of"),
        ({"duration_s": 0}, "duration_s must be a positive number"),
        ({"duration_s": float("nan")}, "duration_s must be a positive number"),
        ({"max_velocity": 10}, "both max_velocity and max_acceleration"),
        ({"duration_s": 1, "max_velocity": 10}, "not both"),
        ({"max_velocity": -1, "max_acceleration": 5}, "max_velocity must be a positive"),
    ],
)
def test_impossible_requests_say_what_to_change(kwargs, says) -> None:
    arguments = {"profile": "trapezoidal", "start": 0.0, "target": 90.0, **kwargs}
    with pytest.raises(PlanningError, match=says):
        plan(**arguments)
