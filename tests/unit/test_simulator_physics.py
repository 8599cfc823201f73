"""Servo motion under speed and acceleration limits, driven by a fake clock."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.servo import physics
from services.servo.physics import TICK_S, ChannelConfig, ServoBank


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def tick(self, count: int = 1) -> None:
        self.now += count * TICK_S


def bank_with(clock: FakeClock, **config) -> ServoBank:
    return ServoBank([ChannelConfig(**config), ChannelConfig(**config)], clock=clock)


def ticks_to_reach_target(bank: ServoBank, clock: FakeClock, channel: int = 0) -> int:
    for ticks in range(1, 100_000):
        clock.tick()
        if bank.position(channel) == bank.target(channel):
            return ticks
    raise AssertionError("never arrived")


def test_starts_at_home_and_still():
    clock = FakeClock()
    bank = bank_with(clock, home_qus=5000)
    assert [bank.position(0), bank.target(0), bank.moving()] == [5000, 5000, False]


def test_unlimited_speed_arrives_on_the_next_tick():
    clock = FakeClock()
    bank = bank_with(clock)
    bank.set_target(0, 7000)
    assert bank.position(0) == 6000 and bank.moving()  # not before the tick boundary
    clock.tick()
    assert bank.position(0) == 7000 and not bank.moving()


@pytest.mark.parametrize(("speed", "distance"), [(100, 1000), (7, 2000), (1, 30), (40, -2000)])
def test_speed_limit_gives_the_predicted_travel_time(speed, distance):
    clock = FakeClock()
    bank = bank_with(clock, speed=speed)
    bank.set_target(0, 6000 + distance)
    expected_ticks = -(-abs(distance) // speed)  # ceil
    clock.tick(expected_ticks - 1)
    assert bank.moving()
    assert bank.position(0) == 6000 + (expected_ticks - 1) * speed * (1 if distance > 0 else -1)
    clock.tick()
    assert bank.position(0) == 6000 + distance
    assert not bank.moving()


def test_position_depends_only_on_the_clock_not_on_how_often_it_is_read():
    clock_a, clock_b = FakeClock(), FakeClock()
    often, rarely = (
        bank_with(clock_a, speed=30, acceleration=5),
        bank_with(clock_b, speed=30, acceleration=5),
    )
    often.set_target(0, 7500)
    rarely.set_target(0, 7500)
    for _ in range(37):
        clock_a.tick()
        often.position(0)
    clock_b.tick(37)
    assert often.position(0) == rarely.position(0)
    clock_a.now += 0.0099  # part of a tick does nothing
    assert often.position(0) == rarely.position(0)


def test_acceleration_ramps_up_then_down():
    clock = FakeClock()
    bank = bank_with(clock, acceleration=8)  # +1 quarter-us per tick per tick
    bank.set_target(0, 7000)
    positions = []
    while bank.moving():
        clock.tick()
        positions.append(bank.position(0))
    assert positions[:4] == [6001, 6003, 6006, 6010]  # speed 1, 2, 3, 4 ...
    steps = [b - a for a, b in zip([6000, *positions], positions, strict=False)]
    peak = steps.index(max(steps))
    assert 0.3 * len(steps) < peak < 0.7 * len(steps)  # peak speed mid-way
    assert steps[-3:] < steps[peak - 3 : peak]  # slows before arriving
    # Continuous-time estimate: accelerate half the way, brake half: 2*sqrt(d/a) ticks.
    assert 55 <= len(positions) <= 70
    assert positions[-1] == 7000


def test_speed_caps_an_accelerating_servo():
    clock = FakeClock()
    bank = bank_with(clock, speed=10, acceleration=80)  # reaches speed 10 in one tick
    bank.set_target(0, 7000)
    clock.tick(20)
    assert bank.position(0) == 6200


def test_runtime_speed_change_applies_from_the_next_tick():
    clock = FakeClock()
    bank = bank_with(clock, speed=10)
    bank.set_target(0, 7000)
    clock.tick(5)
    bank.set_speed(0, 100)
    clock.tick(1)
    assert bank.position(0) == 6150
    bank.set_acceleration(0, 16)
    assert bank.snapshot()[0].acceleration == 16


def test_targets_clamp_to_the_channel_limits():
    clock = FakeClock()
    bank = bank_with(clock, min_qus=4000, max_qus=7000)
    bank.set_target(0, 1)
    assert bank.target(0) == 4000
    bank.set_target(0, 16383)
    assert bank.target(0) == 7000


def test_target_zero_turns_the_channel_off_and_the_next_target_jumps():
    clock = FakeClock()
    bank = bank_with(clock, speed=1)
    bank.set_target(0, 0)
    assert bank.target(0) == 0 and bank.position(0) == 0
    assert not bank.moving()
    bank.set_target(0, 7000)  # nothing to ramp from when the pulses were off
    assert bank.position(0) == 7000 and not bank.moving()


def test_moving_is_true_while_any_channel_moves():
    clock = FakeClock()
    bank = bank_with(clock, speed=50)
    bank.set_target(1, 6100)
    assert bank.moving()
    clock.tick(1)
    assert bank.moving()
    clock.tick(1)
    assert not bank.moving()


def test_go_home_returns_each_channel_to_its_own_home():
    clock = FakeClock()
    bank = ServoBank([ChannelConfig(home_qus=5000), ChannelConfig(home_qus=0)], clock=clock)
    bank.set_target(0, 7000)
    bank.set_target(1, 7000)
    clock.tick()
    bank.go_home()
    clock.tick()
    assert [bank.position(0), bank.position(1)] == [5000, 0]


def test_reversing_mid_move_under_acceleration_ends_on_the_new_target():
    clock = FakeClock()
    bank = bank_with(clock, acceleration=4)
    bank.set_target(0, 8000)
    clock.tick(30)
    bank.set_target(0, 5000)
    ticks_to_reach_target(bank, clock)
    assert bank.position(0) == 5000 and not bank.moving()


def test_long_idle_periods_cost_nothing():
    clock = FakeClock()
    bank = bank_with(clock, speed=1)
    bank.set_target(0, 8000)
    clock.now += 24 * 3600  # a day later: one call replays it quickly
    assert bank.position(0) == 8000 and bank.ticks == 8_640_000


def test_invalid_channel_config_is_rejected():
    with pytest.raises(ValueError, match=r"home_qus must be 0 \(off\) or in 3968\.\.8000"):
        ChannelConfig(home_qus=100)
    with pytest.raises(ValueError, match=r"acceleration must be in 0\.\.255"):
        ChannelConfig(acceleration=256)
    with pytest.raises(ValueError, match=r"channel must be in 0\.\.1, got 2"):
        bank_with(FakeClock()).set_target(2, 6000)


@given(
    speed=st.integers(0, 300),
    acceleration=st.integers(0, 255),
    start=st.integers(3968, 8000),
    target=st.integers(3968, 8000),
)
def test_every_move_arrives_exactly_and_never_overshoots(speed, acceleration, start, target):
    clock = FakeClock()
    bank = ServoBank(
        [ChannelConfig(home_qus=start, speed=speed, acceleration=acceleration)], clock=clock
    )
    bank.set_target(0, target)
    low, high = sorted((start, target))
    previous = start
    for _ in range(20_000):
        clock.tick()
        position = bank.position(0)
        assert low <= position <= high
        if speed:
            assert abs(position - previous) <= speed + 1  # positions are rounded
        previous = position
        if not bank.moving():
            break
    assert bank.position(0) == target


def test_docstring_examples_run():
    assert doctest.testmod(physics).failed == 0
