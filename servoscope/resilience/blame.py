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
reached the upstream. The breaker stage of the resilience core
(:mod:`servoscope.resilience.attempt`) counts every attempt's outcome through
:meth:`Breaker.record_outcome`, which decides with :func:`blame`; the gateway, the motion
planner's servo link and device-state's sections all run that stage.
"""

from __future__ import annotations

import enum

from servoscope.outbound import Reply, RequestUnsendable, UpstreamError


class Blame(enum.Enum):
    UPSTREAM = "upstream"  # counts against the upstream: breaker failure, retryable
    CALLER = "caller"  # never reached the upstream: the caller's request was at fault
    NONE = "none"  # the upstream answered (2xx-4xx): it is alive and well


def blame(outcome: Reply | int | BaseException) -> Blame:
    """Whose fault ``outcome`` is: a :class:`Reply` (or its status) or what the call raised."""
    if isinstance(outcome, Reply):
        outcome = outcome.status
    if isinstance(outcome, int):
        return Blame.UPSTREAM if outcome >= 500 else Blame.NONE
    if isinstance(outcome, RequestUnsendable):
        return Blame.CALLER
    if isinstance(outcome, UpstreamError | TimeoutError):
        return Blame.UPSTREAM
    # Anything else a call raised is put on the upstream too: nothing says otherwise.
    return Blame.UPSTREAM
