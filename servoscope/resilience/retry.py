"""Retries with tenacity: exponential backoff with full jitter, inside a retry budget.

A failed attempt (:class:`~servoscope.resilience.attempt.AttemptFailed`: no answer, or
a timeout; or an answer whose status is in ``retry_on``, 502/503/504 by default) is
retried only when all of these hold:

- the call may be retried (:meth:`Call.may_retry`: an idempotent method, or a command
  carrying ``Idempotency-Key``);
- attempts are left (``max_attempts``);
- the wait (the upstream's ``Retry-After``, seconds or HTTP-date, unless
  ``honour_retry_after`` is off; else full-jitter backoff, none at all when
  ``backoff_max_s`` is 0) ends before the call's deadline, if it has one;
- the upstream's :class:`~servoscope.resilience.budget.RetryBudget`, if it has one, still
  has a retry to spend.

The decision is made in one place (:meth:`RetryPolicy.decide`), so the budget is only
spent on retries that really happen. A refusal of a stage inside (an open breaker, a
passed deadline) or a request that could not be sent ends the retries at once.
"""

from __future__ import annotations

import email.utils
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import tenacity
from opentelemetry import trace
from prometheus_client import Counter

from servoscope.outbound import Reply
from servoscope.resilience.attempt import AttemptFailed
from servoscope.resilience.budget import RetryBudget
from servoscope.resilience.clock import SYSTEM_CLOCK, Clock
from servoscope.resilience.deadline import Deadline
from servoscope.resilience.options import RetryOptions
from servoscope.resilience.pipeline import Call, Next

RETRYABLE_STATUS = frozenset({502, 503, 504})  # a 500 is an answer, not a transient fault


@dataclass(frozen=True)
class RetryMetrics:
    """The families retries report to: decisions by ``(upstream, outcome)`` (``retried``,
    ``budget_exhausted``, ``gave_up``) and retries the budget refused, by ``(upstream)``."""

    retries: Counter
    budget_exhausted: Counter


def retry_after_s(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now`` (epoch seconds): delta-seconds or an
    HTTP-date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True)
class RetryPolicy:
    """When to try again. ``upstream`` labels the metrics; ``prefix`` names the span
    events (``<prefix>.retry``, ``<prefix>.retry_gave_up``, ...). The retries are taken
    from ``budget``; the requests its ratio is of are the caller's to count (the gateway
    counts each with its first attempt's outcome, in the same round trip)."""

    options: RetryOptions
    upstream: str
    budget: RetryBudget | None = None
    clock: Clock = field(default=SYSTEM_CLOCK, repr=False)
    metrics: RetryMetrics | None = None
    prefix: str = "resilience"
    retry_on: frozenset[int] = RETRYABLE_STATUS

    def run(
        self, attempt: Callable[[int], Reply], *, may_retry: bool, deadline: Deadline | None
    ) -> Reply:
        """Call ``attempt(n)`` until it succeeds or a retry is not allowed; returns or raises."""
        if not self.options.enabled or not may_retry or self.options.max_attempts <= 1:
            return attempt(1)
        # Fast path: most first attempts succeed, and tenacity's loop is not free.
        try:
            first = attempt(1)
        except AttemptFailed as exc:
            first_error: AttemptFailed | None = exc
        else:
            if first.status not in self.retry_on:
                return first
            first_error = None
        jitter = tenacity.wait_random_exponential(
            multiplier=self.options.backoff_base_s, max=self.options.backoff_max_s
        )
        planned: dict[str, float] = {}

        def decide(state: tenacity.RetryCallState) -> bool:
            planned["wait"] = self.decide(state, jitter, deadline)
            return planned["wait"] >= 0

        retrying = tenacity.Retrying(
            retry=decide,
            wait=lambda _state: planned["wait"],
            stop=tenacity.stop_never,
            sleep=self._sleep,
            before_sleep=self._note_retry,
        )
        numbers = itertools.count(1)

        def next_attempt() -> Reply:
            number = next(numbers)
            if number > 1:
                return attempt(number)
            if first_error is not None:
                raise first_error  # replay the first attempt's outcome into tenacity
            return first

        return retrying(next_attempt)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:  # no backoff (the motion planner's setpoints): not even a yield
            self.clock.sleep(seconds)

    def decide(
        self,
        state: tenacity.RetryCallState,
        jitter: tenacity.wait.wait_base,
        deadline: Deadline | None,
    ) -> float:
        """Seconds to wait before the next attempt, or -1 to stop here."""
        outcome = state.outcome
        assert outcome is not None
        if outcome.failed:
            if not isinstance(outcome.exception(), AttemptFailed):
                return -1  # breaker open, deadline passed: retrying cannot help
            wait = jitter(state)
        else:
            reply: Reply = outcome.result()
            if reply.status not in self.retry_on:
                return -1
            hinted = (
                retry_after_s(_header(reply.headers, "Retry-After"), self.clock.time())
                if self.options.honour_retry_after
                else None
            )
            if hinted is not None and hinted > self.options.retry_after_max_s:
                return self._gave_up("the upstream asked for a longer pause")
            wait = jitter(state) if hinted is None else hinted
        if state.attempt_number >= self.options.max_attempts:
            return self._gave_up("no attempts left")
        if deadline is not None and wait >= deadline.remaining() - 0.005:
            return self._gave_up("the deadline would pass while waiting")
        if self.budget is not None and not self.budget.try_spend():
            self._count("budget_exhausted")
            if self.metrics is not None:
                self.metrics.budget_exhausted.labels(self.upstream).inc()
            trace.get_current_span().add_event(
                f"{self.prefix}.retry_budget_exhausted", {f"{self.prefix}.upstream": self.upstream}
            )
            return -1
        return wait

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.retries.labels(self.upstream, outcome).inc()

    def _gave_up(self, why: str) -> float:
        self._count("gave_up")
        trace.get_current_span().add_event(
            f"{self.prefix}.retry_gave_up", {f"{self.prefix}.reason": why}
        )
        return -1

    def _note_retry(self, state: tenacity.RetryCallState) -> None:
        self._count("retried")
        trace.get_current_span().add_event(
            f"{self.prefix}.retry",
            {
                f"{self.prefix}.retry.attempt": state.attempt_number + 1,
                f"{self.prefix}.retry.wait_ms": round((state.upcoming_sleep or 0) * 1000, 1),
            },
        )


def _header(headers: dict[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


@dataclass(frozen=True)
class RetryStage:
    """Runs the rest once per attempt, as :attr:`policy` allows; no attempt starts after
    the call's deadline."""

    policy: RetryPolicy
    name: str = "retry (budget)"

    def __call__(self, call: Call, rest: Next) -> Reply:
        def attempt(number: int) -> Reply:
            if call.deadline is not None:
                call.deadline.check()
            call.attempt = number
            return rest(call)

        return self.policy.run(attempt, may_retry=call.may_retry(), deadline=call.deadline)
