"""Retries with tenacity: exponential backoff with full jitter, inside a retry budget.

A failed attempt (connection error, timeout, or a 502/503/504 answer) is retried only
when all of these hold:

- the request is idempotent (GET, HEAD, OPTIONS, PUT, DELETE) or carries ``Idempotency-Key``;
- attempts are left (``max_attempts``);
- the wait (the upstream's ``Retry-After``, seconds or HTTP-date, else full-jitter backoff)
  ends before the request's deadline;
- the upstream's :class:`~gateway.budget.RetryBudget` still has a retry to spend.

The decision is made in one place (:meth:`RetryPolicy.decide`), so the budget is only
spent on retries that really happen.
"""

from __future__ import annotations

import email.utils
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import tenacity
from opentelemetry import trace

from gateway import metrics
from gateway.budget import RetryBudget
from gateway.deadline import Deadline
from gateway.policy import RetryOptions
from servoscope.outbound import Reply
from servoscope.resilience.clock import SYSTEM_CLOCK, Clock

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRYABLE_STATUS = frozenset({502, 503, 504})


class AttemptFailed(Exception):
    """An attempt got no answer: ``status`` is what the gateway would say (502 or 504)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


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


def retryable(method: str, headers: Any) -> bool:
    return method in IDEMPOTENT or bool(headers.get("Idempotency-Key"))


@dataclass
class RetryPolicy:
    options: RetryOptions
    budget: RetryBudget
    clock: Clock = field(default=SYSTEM_CLOCK, repr=False)

    def run(self, attempt: Callable[[int], Reply], *, may_retry: bool, deadline: Deadline) -> Reply:
        """Call ``attempt(n)`` until it succeeds or a retry is not allowed; returns or raises."""
        if not self.options.enabled or not may_retry or self.options.max_attempts <= 1:
            return attempt(1)
        # Fast path: most first attempts succeed, and tenacity's loop is not free.
        try:
            first = attempt(1)
        except AttemptFailed as exc:
            first_error: AttemptFailed | None = exc
        else:
            if first.status not in RETRYABLE_STATUS:
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
            sleep=self.clock.sleep,
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

    def decide(
        self, state: tenacity.RetryCallState, jitter: tenacity.wait.wait_base, deadline: Deadline
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
            if reply.status not in RETRYABLE_STATUS:
                return -1
            hinted = retry_after_s(_header(reply.headers, "Retry-After"), self.clock.time())
            if hinted is not None and hinted > self.options.retry_after_max_s:
                return self._gave_up("the upstream asked for a longer pause")
            wait = jitter(state) if hinted is None else hinted
        if state.attempt_number >= self.options.max_attempts:
            return self._gave_up("no attempts left")
        if wait >= deadline.remaining() - 0.005:
            return self._gave_up("the deadline would pass while waiting")
        if not self.budget.try_spend():
            metrics.RETRIES.labels(self.budget.upstream, "budget_exhausted").inc()
            metrics.RETRY_BUDGET_EXHAUSTED.labels(self.budget.upstream).inc()
            trace.get_current_span().add_event(
                "gateway.retry_budget_exhausted", {"gateway.upstream": self.budget.upstream}
            )
            return -1
        return wait

    def _gave_up(self, why: str) -> float:
        metrics.RETRIES.labels(self.budget.upstream, "gave_up").inc()
        trace.get_current_span().add_event("gateway.retry_gave_up", {"gateway.reason": why})
        return -1

    def _note_retry(self, state: tenacity.RetryCallState) -> None:
        metrics.RETRIES.labels(self.budget.upstream, "retried").inc()
        trace.get_current_span().add_event(
            "gateway.retry",
            {
                "gateway.retry.attempt": state.attempt_number + 1,
                "gateway.retry.wait_ms": round((state.upcoming_sleep or 0) * 1000, 1),
            },
        )


def _header(headers: dict[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None
