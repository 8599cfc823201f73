"""Pulse width <-> angle mapping per channel."""

from __future__ import annotations

import doctest
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.servo import calibration
from services.servo.calibration import Calibration


def test_default_mapping_end_points_and_middle():
    cal = Calibration()
    assert cal.angle_to_us(0) == 1000.0
    assert cal.angle_to_us(90) == 1500.0
    assert cal.angle_to_us(180) == 2000.0
    assert cal.us_to_angle(1250) == 45.0


def test_quarter_microseconds_are_rounded_integers():
    cal = Calibration()
    assert cal.angle_to_quarter_us(90) == 6000
    assert isinstance(cal.angle_to_quarter_us(33.3), int)
    assert cal.angle_to_quarter_us(0.1) == 4002  # 1000.555... us = 4002.2 quarter-us
    assert cal.quarter_us_to_angle(8000) == 180.0


def test_custom_and_reversed_servos():
    wide = Calibration(min_us=500, max_us=2500, min_angle=-90, max_angle=90)
    assert wide.angle_to_us(-90) == 500.0
    assert wide.angle_to_us(45) == 2000.0
    reversed_servo = Calibration(min_angle=180, max_angle=0)
    assert reversed_servo.angle_to_us(180) == 1000.0
    assert reversed_servo.angle_to_us(0) == 2000.0
    assert reversed_servo.us_to_angle(1250) == 135.0
    assert reversed_servo.contains_angle(0) and reversed_servo.contains_angle(180)


def test_contains_angle_is_inclusive_and_rejects_non_numbers():
    cal = Calibration()
    assert cal.contains_angle(0) and cal.contains_angle(180)
    assert not cal.contains_angle(-0.001)
    assert not cal.contains_angle(180.001)
    assert not cal.contains_angle(math.nan)
    assert not cal.contains_angle("90")  # type: ignore[arg-type]


@pytest.mark.parametrize("angle", [-1, 181, math.nan, math.inf, None, True])
def test_angle_outside_the_range_is_rejected_with_the_range(angle):
    with pytest.raises(ValueError, match=r"angle must be a number in 0\.0\.\.180\.0 degrees"):
        Calibration().angle_to_us(angle)


def test_pulse_widths_outside_the_range_extrapolate_but_off_has_no_angle():
    cal = Calibration()
    assert cal.us_to_angle(992) == pytest.approx(-1.44)
    with pytest.raises(ValueError, match="0 means the channel is off"):
        cal.quarter_us_to_angle(0)
    with pytest.raises(ValueError, match="finite number"):
        cal.us_to_angle(math.nan)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_us": 2000, "max_us": 1000}, "min_us < max_us"),
        ({"min_us": 1500, "max_us": 1500}, "min_us < max_us"),
        ({"min_us": 0}, "0 < min_us"),
        ({"max_us": 5000}, r"max_us <= 4095\.75"),
        ({"min_angle": 90, "max_angle": 90}, "must differ"),
        ({"min_us": math.nan}, "min_us must be a finite number"),
        ({"max_angle": "180"}, "max_angle must be a finite number"),
    ],
)
def test_invalid_calibrations_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Calibration(**kwargs)


def test_calibration_is_immutable():
    with pytest.raises(AttributeError):
        Calibration().min_us = 900  # type: ignore[misc]


@st.composite
def calibrations(draw):
    low = draw(st.floats(100, 2000))
    high = draw(st.floats(low + 1, 4000))
    a = draw(st.floats(-360, 360))
    b = draw(st.floats(-360, 360).filter(lambda x: abs(x - a) > 1))
    return Calibration(low, high, a, b)


@given(calibrations(), st.floats(0, 1))
def test_angle_and_pulse_width_are_inverses(cal, fraction):
    angle = cal.min_angle + fraction * (cal.max_angle - cal.min_angle)
    if not cal.contains_angle(angle):  # float rounding at an end point
        return
    us = cal.angle_to_us(angle)
    assert cal.min_us - 1e-6 <= us <= cal.max_us + 1e-6
    assert cal.us_to_angle(us) == pytest.approx(angle, abs=1e-6)


@given(calibrations(), st.floats(0, 1))
def test_quarter_us_rounding_error_is_below_an_eighth_of_a_microsecond(cal, fraction):
    angle = cal.min_angle + fraction * (cal.max_angle - cal.min_angle)
    if not cal.contains_angle(angle):
        return
    quarter_us = cal.angle_to_quarter_us(angle)
    assert abs(quarter_us / 4 - cal.angle_to_us(angle)) <= 0.125


def test_docstring_examples_run():
    result = doctest.testmod(calibration)
    assert result.attempted > 5
    assert result.failed == 0
