"""The overall deadline on a manual clock: what is left, the header, the caller's cap."""

from __future__ import annotations

import pytest

from servoscope.resilience.clock import ManualClock
from servoscope.resilience.deadline import UNBOUNDED_S, Deadline, DeadlineExceeded
from servoscope.resilience.options import DeadlineOptions


def test_the_deadline_counts_down_and_then_refuses() -> None:
    clock = ManualClock()
    deadline = Deadline.start(DeadlineOptions(total_s=3.0), None, clock)
    clock.advance(1.25)
    assert deadline.check() == pytest.approx(1.75)
    assert deadline.header_value() == "1750"
    clock.advance(1.75)
    with pytest.raises(DeadlineExceeded, match="3s deadline passed"):
        deadline.check()
    assert deadline.header_value() == "0"


def test_a_caller_may_shorten_it_never_lengthen_it_and_garble_is_ignored() -> None:
    clock = ManualClock()
    options = DeadlineOptions(total_s=3.0)
    assert Deadline.start(options, "500", clock).remaining() == pytest.approx(0.5)
    assert Deadline.start(options, "9000", clock).remaining() == pytest.approx(3.0)
    assert Deadline.start(options, "soon", clock).remaining() == pytest.approx(3.0)
    off = DeadlineOptions(enabled=False, total_s=3.0)
    assert Deadline.start(off, None, clock).remaining() == pytest.approx(UNBOUNDED_S)
