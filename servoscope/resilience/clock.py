"""The one place the resilience stages read time from, so their tests need no sleep.

The breaker, the deadline and the retry budget take a :class:`Clock`; in production it is
:data:`SYSTEM_CLOCK` (the process's monotonic clock for durations, the wall clock for
what several processes must agree on, such as when a shared breaker opened). A test
passes a :class:`ManualClock` and moves it forward by hand::

    clock = ManualClock()
    breaker = Breaker("up", "i:1", BreakerOptions(reset_s=5), SharedState.local(), metrics,
                      clock=clock)
    ...                        # trip it
    clock.advance(5)           # five seconds later, at once
    breaker.admit()            # a half-open probe
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back: for durations within this process."""
        ...

    def time(self) -> float:
        """Seconds since the epoch: for instants other processes and hosts read too."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a retry's backoff)."""
        ...


class SystemClock:
    """The real clocks of :mod:`time`."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


class ManualClock:
    """A clock that moves only when told: :meth:`advance`, or :meth:`sleep` (which
    advances instead of waiting and records the wait in :attr:`slept`)."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds
