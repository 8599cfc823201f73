"""Whose fault a failed call is: the one rule every caller that guards an upstream uses.

Only an upstream's own failures count against it — in its circuit breaker, its retry
budget and the retries spent on it:

- it answered 5xx;
- it did not answer in time (:class:`~servoscope.outbound.UpstreamTimeout`);
- the connection failed or broke off (:class:`~servoscope.outbound.UpstreamError`) on a
  call that was really sent.

Everything else is not the upstream's fault. A 4xx answer means the upstream worked and
refused the request; a request that could not even be put on the wire (a path with a
space or a non-ASCII character, a header value with a line break:
:class:`~servoscope.outbound.RequestUnsendable`) is the caller's, and no byte of it
reached the upstream. Callers use it like this::

    try:
        reply = client.request(...)
    except Exception as exc:
        breaker.record_outcome(exc)   # counted only when blame(exc) is UPSTREAM
        raise
    breaker.record_outcome(reply)

The gateway (:mod:`gateway.pipeline`), the motion planner's servo link and device-state's
sections all decide with :func:`blame`.
"""

from __future__ import annotations

import enum
from concurrent.futures import TimeoutError as FutureTimeout

from servoscope.outbound import Reply, RequestUnsendable, UpstreamError


class Blame(enum.Enum):
    UPSTREAM = "upstream"  # counts against the upstream: breaker failure, retryable
    CALLER = "caller"  # never reached the upstream: the caller's request was at fault
    NONE = "none"  # the upstream answered (2xx-4xx): it is alive and well


class AnsweredWith(Exception):
    """A caller turned an upstream's answer into an exception; ``status`` keeps the answer."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


def blame(outcome: Reply | int | BaseException) -> Blame:
    """Whose fault ``outcome`` is: a :class:`Reply` (or its status) or what the call raised."""
    if isinstance(outcome, Reply):
        outcome = outcome.status
    if isinstance(outcome, int):
        return Blame.UPSTREAM if outcome >= 500 else Blame.NONE
    if isinstance(outcome, RequestUnsendable):
        return Blame.CALLER
    if isinstance(outcome, AnsweredWith):
        return blame(outcome.status)
    if isinstance(outcome, UpstreamError | FutureTimeout | TimeoutError):
        return Blame.UPSTREAM
    # Anything else went wrong after a usable answer arrived (an unexpected body): the
    # upstream answered, but not with what it promises, which is its failure too.
    return Blame.UPSTREAM


def counts_against_upstream(outcome: Reply | int | BaseException) -> bool:
    return blame(outcome) is Blame.UPSTREAM
