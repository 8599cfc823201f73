"""The simulated serial line's timing: bytes at the baud rate, one after another."""

from __future__ import annotations

import pytest

from services.servo.simulator.line import SerialLine

BAUD = 10_000  # 10 bits a byte: 1 ms per byte


def line(now: float = 100.0) -> SerialLine:
    return SerialLine(BAUD, lambda: now)


def test_a_command_is_received_when_its_last_byte_has_arrived() -> None:
    wire = line()
    wire.arrived(4, now=100.0)
    assert wire.received_at(offset=0, length=4) == pytest.approx(100.004)


def test_commands_written_together_arrive_one_after_another() -> None:
    wire = line()
    wire.arrived(6, now=100.0)  # a 4-byte Set Target and a 2-byte Get Position at once
    assert wire.received_at(0, 4) == pytest.approx(100.004)
    assert wire.received_at(4, 2) == pytest.approx(100.006)


def test_a_command_in_a_later_chunk_starts_when_that_chunk_arrived() -> None:
    wire = line()
    wire.arrived(2, now=100.0)
    wire.arrived(2, now=100.5)
    assert wire.received_at(0, 2) == pytest.approx(100.002)
    assert wire.received_at(2, 2) == pytest.approx(100.502)


def test_replies_leave_in_turn_and_take_their_wire_time() -> None:
    wire = line()
    assert wire.reply_due(ready=100.0, length=2) == pytest.approx(100.002)
    assert wire.reply_due(ready=100.0, length=2) == pytest.approx(100.004)  # after the first
    assert wire.reply_due(ready=101.0, length=1) == pytest.approx(101.001)


def test_forget_keeps_the_arrival_of_a_command_still_incomplete() -> None:
    wire = line()
    wire.arrived(3, now=100.0)  # a whole 2-byte command and the first byte of the next
    wire.arrived(3, now=100.2)
    assert wire.received_at(0, 2) == pytest.approx(100.002)
    wire.forget(pending=4)  # bytes 2..5 wait for the rest of their commands
    assert [offset for offset, _ in wire.arrivals] == [0, 3]
    assert wire.received_at(2, 4) == pytest.approx(100.006)  # its first byte came at 100.0
    wire.forget(pending=0)  # everything executed: only the latest chunk is kept
    assert [offset for offset, _ in wire.arrivals] == [3]


def test_baud_zero_is_no_pacing_and_reset_forgets_the_line() -> None:
    wire = SerialLine(0, lambda: 5.0)
    wire.arrived(4, now=5.0)
    assert wire.received_at(0, 4) == 5.0 and wire.reply_due(5.0, 2) == 5.0
    paced = line()
    paced.arrived(4, now=100.0)
    paced.received_at(0, 4)
    paced.reply_due(100.0, 200)
    paced.reset()
    assert (paced.fed, paced.last_due, paced.in_free, list(paced.arrivals)) == (0, 0.0, 0.0, [])
