"""One attempt, innermost first: the transport, its timeout, and the breaker that admits it.

- :class:`BreakerStage` asks its :class:`Targets` for a target whose breaker lets the
  attempt through (or raises :class:`~servoscope.resilience.breaker.BreakerOpen`), runs
  the rest, and has the outcome counted: the upstream's failures fail the breaker, its
  answers (4xx included) succeed it, a request that could not be sent is not counted
  (:mod:`servoscope.resilience.blame`). One upstream with one breaker is
  :class:`OneTarget`; the gateway's balancer chooses among an upstream's instances.
- :class:`AttemptTimeoutStage` sets the attempt's connect and read timeouts, cut to what
  is left of the deadline.
- :class:`TransportStage` sends the attempt through the target's
  :class:`~servoscope.outbound.UpstreamClient` (a test's scripted client in unit tests),
  telling the upstream how much of the deadline is left; no answer is
  :class:`AttemptFailed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from servoscope.outbound import Reply, Timeout, UpstreamError, UpstreamTimeout
from servoscope.resilience.breaker import CLOSED, Breaker
from servoscope.resilience.deadline import DEADLINE_HEADER, UNBOUNDED_S
from servoscope.resilience.options import AttemptTimeoutOptions
from servoscope.resilience.pipeline import Call, Next


class AttemptFailed(UpstreamError):
    """An attempt got no answer: ``status`` is what a proxy would say (502, or 504 for a
    timeout); ``cause`` is the client's error. The upstream's fault
    (:func:`~servoscope.resilience.blame.blame`), like the error it wraps."""

    def __init__(self, status: int, detail: str, cause: UpstreamError | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.cause = cause


class Client(Protocol):
    """The transport seam: :meth:`servoscope.outbound.UpstreamClient.request`."""

    def request(self, method: str, path: str, **options: Any) -> Reply: ...


class Target(Protocol):
    """Where an attempt goes: a client, and the breaker that guards it."""

    client: Client
    breaker: Breaker

    def begin(self) -> None: ...

    def end(self) -> None: ...


class Targets(Protocol):
    """The breaker stage's choice of target, and how an outcome is counted."""

    def admit(self, call: Any) -> tuple[Target, str]:
        """A target whose breaker lets ``call`` through, and the state it let it through
        in (``closed``, ``half-open``); raises ``BreakerOpen`` when none does."""
        ...

    def record(self, call: Any, target: Target, outcome: Reply | AttemptFailed) -> None: ...


@dataclass
class OneTarget:
    """One upstream behind one breaker: the motion planner's servo link, each of
    device-state's sections."""

    client: Client
    breaker: Breaker

    def begin(self) -> None:
        pass

    def end(self) -> None:
        pass

    def admit(self, call: Call) -> tuple[OneTarget, str]:
        if not self.breaker.options.enabled:
            return self, CLOSED
        return self, self.breaker.admit()

    def record(self, call: Call, target: Target, outcome: Reply | AttemptFailed) -> None:
        if not self.breaker.options.enabled:
            return
        if isinstance(outcome, AttemptFailed) and outcome.cause is not None:
            self.breaker.record_outcome(outcome.cause)  # what the client raised
        else:
            self.breaker.record_outcome(outcome)


@dataclass(frozen=True)
class BreakerStage:
    targets: Targets
    name: str = "breaker"

    def __call__(self, call: Call, rest: Next) -> Reply:
        target, call.breaker_state = self.targets.admit(call)
        call.target = target
        target.begin()
        try:
            reply = rest(call)
        except AttemptFailed as failed:  # no answer: the upstream's failure
            self.targets.record(call, target, failed)
            raise
        finally:
            target.end()
        self.targets.record(call, target, reply)
        return reply


@dataclass(frozen=True)
class AttemptTimeoutStage:
    options: AttemptTimeoutOptions
    name: str = "attempt timeout"

    def __call__(self, call: Call, rest: Next) -> Reply:
        options = self.options
        if call.deadline is None:  # no deadline stage: the options alone bound the attempt
            call.timeout = (
                Timeout(options.connect_s, options.read_s)
                if options.enabled
                else Timeout(UNBOUNDED_S, UNBOUNDED_S)
            )
            return rest(call)
        remaining = call.deadline.remaining()
        if options.enabled:
            call.timeout = Timeout(
                connect=min(options.connect_s, remaining),
                read=min(options.read_s, remaining),
                total=remaining,
            )
        else:
            call.timeout = Timeout(connect=remaining, read=remaining, total=remaining)
        return rest(call)


@dataclass(frozen=True)
class TransportStage:
    """The attempt on the target's client; ``upstream`` names it in failures."""

    upstream: str
    name: str = "transport"

    def __call__(self, call: Call, rest: Next) -> Reply:
        target, timeout = call.target, call.timeout
        assert target is not None and timeout is not None, (
            "the breaker and timeout stages run first"
        )
        headers = call.outbound
        if call.deadline is not None:
            headers = {**headers, DEADLINE_HEADER: call.deadline.header_value()}
        try:
            return target.client.request(
                call.method,
                call.path,
                body=call.body,
                headers=headers,
                timeout=timeout,
                attempt=call.attempt,
                attributes=call.attempt_attributes(),
                checked=call.checked,
            )
        except UpstreamTimeout as exc:
            waited = timeout.total or timeout.read
            detail = f"{self.upstream} did not answer within {waited:.3g}s"
            raise AttemptFailed(504, detail, exc) from None
        except UpstreamError as exc:
            raise AttemptFailed(502, f"{self.upstream} could not be reached: {exc}", exc) from None
