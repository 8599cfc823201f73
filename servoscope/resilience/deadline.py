"""The overall deadline of one call, and the header that carries it downstream.

``total_s`` (or less, when the caller sent ``X-Request-Deadline-Ms``) starts when the
call enters the deadline stage. Every attempt's timeouts are cut to what is left,
a retry is not started when its backoff would end past it, and each attempt tells the
upstream how many milliseconds remain, so no hop waits longer than its caller will.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from servoscope.outbound import Reply
from servoscope.resilience.clock import SYSTEM_CLOCK, Clock
from servoscope.resilience.options import DeadlineOptions
from servoscope.resilience.pipeline import Call, Next

DEADLINE_HEADER = "X-Request-Deadline-Ms"
UNBOUNDED_S = 30.0  # with the stage off: gunicorn's worker timeout is the only limit


class DeadlineExceeded(Exception):
    pass


@dataclass(frozen=True)
class Deadline:
    expires: float  # on ``clock.monotonic()``
    budget_s: float
    clock: Clock = field(default=SYSTEM_CLOCK, repr=False, compare=False)

    @classmethod
    def start(
        cls, options: DeadlineOptions, inbound_ms: str | None, clock: Clock = SYSTEM_CLOCK
    ) -> Deadline:
        budget = options.total_s if options.enabled else UNBOUNDED_S
        if inbound_ms is not None:
            # A garbled caller deadline is ignored rather than failing the call.
            with contextlib.suppress(ValueError):
                budget = min(budget, max(0.0, int(inbound_ms) / 1000))
        return cls(clock.monotonic() + budget, budget, clock)

    def remaining(self) -> float:
        return self.expires - self.clock.monotonic()

    def check(self) -> float:
        """Seconds left; raises :class:`DeadlineExceeded` when none are."""
        left = self.remaining()
        if left <= 0.001:
            raise DeadlineExceeded(f"the request's {self.budget_s:g}s deadline passed")
        return left

    def header_value(self) -> str:
        return str(max(0, int(self.remaining() * 1000)))


@dataclass(frozen=True)
class DeadlineStage:
    """Starts the call's deadline; the stages inside it read what is left."""

    options: DeadlineOptions
    clock: Clock = field(default=SYSTEM_CLOCK, repr=False)
    name: str = "deadline"

    def __call__(self, call: Call, rest: Next) -> Reply:
        call.deadline = Deadline.start(self.options, call.inbound_deadline_ms(), self.clock)
        return rest(call)
