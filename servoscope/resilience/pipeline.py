"""A resilience pipeline: an ordered list of stages with one small interface.

A stage takes the call and the rest of the pipeline, and returns the upstream's reply::

    def stage(call: Call, rest: Next) -> Reply:
        ...                  # refuse by raising, or
        return rest(call)    # call the rest (the retry stage: once per attempt)

The core's stages, in the one order they may run in (:data:`ORDER`, outermost first):

=================  =============================================  =========================
stage              module                                         refuses with
=================  =============================================  =========================
deadline           :mod:`servoscope.resilience.deadline`          ``DeadlineExceeded``
bulkhead           :mod:`servoscope.resilience.bulkhead`          ``BulkheadFull``
retry (budget)     :mod:`servoscope.resilience.retry`             (the last failure)
breaker            :mod:`servoscope.resilience.attempt`           ``BreakerOpen``
attempt timeout    :mod:`servoscope.resilience.attempt`           —
transport          :mod:`servoscope.resilience.attempt`           ``AttemptFailed``
=================  =============================================  =========================

Why this order: the deadline wraps everything that can wait; the bulkhead is taken once
per call, so retries cannot multiply a sick upstream's share of threads; the breaker
sits inside retry so every attempt is counted and an open breaker stops retries at once;
the attempt timeout is innermost so it bounds exactly one call, which the transport
sends through :class:`servoscope.outbound.UpstreamClient`.

A user picks the stages it needs, each with its own options, and may put stages of its
own before them (the gateway: authentication, rate limit, request check); the time
every stage reads comes from an injected :class:`~servoscope.resilience.clock.Clock` and
the transport is whatever client the breaker stage's target holds, so a test runs a
whole pipeline on a manual clock and a scripted client: no socket, no sleep.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry import trace
from opentelemetry.trace import Span

from servoscope.outbound import Reply, Timeout

if TYPE_CHECKING:
    from servoscope.resilience.attempt import Target
    from servoscope.resilience.deadline import Deadline

ORDER = ("deadline", "bulkhead", "retry (budget)", "breaker", "attempt timeout", "transport")
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(kw_only=True)
class Call:
    """One call to an upstream as it moves through the stages.

    The caller fills in what to send; the stages fill in the rest as they run. A user
    with more to carry (the gateway: route, API key, the inbound request) subclasses it
    and overrides the few methods below that stages ask."""

    method: str = "GET"
    path: str = "/"  # with its query string
    body: bytes | None = None
    outbound: dict[str, str] = field(default_factory=dict)  # headers sent on every attempt
    # The caller ran servoscope.outbound.check_sendable on path and outbound (the gateway
    # does, to refuse a client's mistake before any attempt): the client need not again.
    checked: bool = False
    span: Span = field(default_factory=trace.get_current_span)  # events of the stages go here
    # Set by the stages: the deadline (None without a deadline stage), then per attempt
    # its number, the target the breaker admitted it to and in which state, its timeouts.
    deadline: Deadline | None = None
    attempt: int = 1
    target: Target | None = None
    breaker_state: str = "closed"
    timeout: Timeout | None = None

    def caller(self) -> str | None:
        """Who is calling, for a bulkhead's per-caller share (None: no share)."""
        return None

    def inbound_deadline_ms(self) -> str | None:
        """A deadline the caller's own caller sent (milliseconds), to shorten ours."""
        return None

    def may_retry(self) -> bool:
        return retryable(self.method, self.outbound)

    def attempt_attributes(self) -> dict[str, Any]:
        """Attributes for each attempt's client span."""
        return {}


Next = Callable[[Call], Reply]


def retryable(method: str, headers: Mapping[str, str]) -> bool:
    """Idempotent methods, or commands carrying an ``Idempotency-Key``: the upstream
    applies those once however often they arrive."""
    return method in IDEMPOTENT or bool(headers.get("Idempotency-Key"))


class Stage(Protocol):
    """One step of a pipeline: it refuses by raising, or calls ``rest`` and returns its reply."""

    name: str

    def __call__(self, call: Any, rest: Next) -> Reply: ...


def _end(call: Call) -> Reply:
    raise AssertionError("the transport is the last stage: nothing comes after it")


class Pipeline:
    """Stages chained once, outermost first; calling it runs a call through all of them.

    The core's stages must keep :data:`ORDER` between them; a user's own stages may
    stand anywhere (the gateway puts its own before the core's)."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        core = [stage.name for stage in stages if stage.name in ORDER]
        if core != sorted(core, key=ORDER.index):
            raise ValueError(f"the core's stages {core} are out of their order {list(ORDER)}")
        self.stages = tuple(stages)
        self.names = tuple(stage.name for stage in stages)
        run: Next = _end
        for stage in reversed(self.stages):
            run = _link(stage, run)
        self.run = run

    def __call__(self, call: Call) -> Reply:
        return self.run(call)


def _link(stage: Stage, rest: Next) -> Next:
    return lambda call: stage(call, rest)


@dataclass(frozen=True)
class Named:
    """A plain function as a stage, with its name (for stages a user writes as methods)."""

    name: str
    run: Callable[[Any, Next], Reply]

    def __call__(self, call: Any, rest: Next) -> Reply:
        return self.run(call, rest)
