"""Retries: Retry-After in both forms, which requests may be retried, and
:meth:`RetryPolicy.run` driven by a scripted upstream on a manual clock (no sleep), with
the gateway's policy (budget, backoff) and the motion planner's (no budget, no backoff)."""

from __future__ import annotations

import email.utils
from collections.abc import Callable

import pytest

from servoscope.outbound import Reply
from servoscope.resilience.attempt import AttemptFailed
from servoscope.resilience.breaker import BreakerOpen
from servoscope.resilience.budget import RetryBudget
from servoscope.resilience.clock import ManualClock
from servoscope.resilience.deadline import Deadline, DeadlineExceeded
from servoscope.resilience.options import DeadlineOptions, RetryBudgetOptions, RetryOptions
from servoscope.resilience.pipeline import retryable
from servoscope.resilience.retry import RetryPolicy, retry_after_s
from servoscope.resilience.sharedstate import SharedState

Outcome = Reply | Exception


def reply(status: int, **headers: str) -> Reply:
    return Reply(status, {k.replace("_", "-"): v for k, v in headers.items()}, b"{}")


class Upstream:
    """Answers attempt n with the script's n-th outcome, and notes when each came."""

    def __init__(self, clock: ManualClock, *script: Outcome) -> None:
        self.clock = clock
        self.script = list(script)
        self.attempts: list[tuple[int, float]] = []

    def __call__(self, number: int) -> Reply:
        self.attempts.append((number, self.clock.monotonic()))
        outcome = self.script[number - 1]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def run(
    *script: Outcome,
    may_retry: bool = True,
    total_s: float = 3.0,
    budget: RetryBudgetOptions | None = None,
    options: RetryOptions | None = None,
) -> tuple[Callable[[], Reply], Upstream, ManualClock, RetryBudget]:
    clock = ManualClock()
    upstream = Upstream(clock, *script)
    spent = RetryBudget("up", budget or RetryBudgetOptions(), SharedState.local(), clock)
    spent.record_request(spent.second())
    policy = RetryPolicy(options or RetryOptions(backoff_max_s=0.5), "up", spent, clock)
    deadline = Deadline.start(DeadlineOptions(total_s=total_s), None, clock)
    return (
        lambda: policy.run(upstream, may_retry=may_retry, deadline=deadline),
        upstream,
        clock,
        spent,
    )


def unreachable() -> AttemptFailed:
    return AttemptFailed(502, "up could not be reached")


def test_a_first_answer_is_returned_at_once() -> None:
    call, upstream, clock, budget = run(reply(200))
    assert call().status == 200
    assert [n for n, _ in upstream.attempts] == [1] and clock.slept == []
    assert budget.totals() == (1, 0)


def test_a_transient_failure_is_retried_after_a_jittered_backoff() -> None:
    call, upstream, clock, budget = run(reply(503), unreachable(), reply(200))
    assert call().status == 200
    assert [n for n, _ in upstream.attempts] == [1, 2, 3]
    assert len(clock.slept) == 2 and all(0 <= wait <= 0.5 for wait in clock.slept)
    assert budget.totals() == (1, 2)  # each retry taken from the budget


def test_a_500_or_a_4xx_is_an_answer_not_a_transient_fault() -> None:
    for status in (500, 404, 429):
        call, upstream, _, _ = run(reply(status), reply(200))
        assert call().status == status and len(upstream.attempts) == 1


def test_a_command_without_idempotency_key_is_never_retried() -> None:
    call, upstream, clock, _ = run(reply(503), reply(200), may_retry=False)
    assert call().status == 503
    assert len(upstream.attempts) == 1 and clock.slept == []


def test_gives_up_after_max_attempts_with_the_last_failure() -> None:
    call, upstream, clock, _ = run(unreachable(), unreachable(), unreachable(), reply(200))
    with pytest.raises(AttemptFailed) as failed:
        call()
    assert failed.value.status == 502
    assert len(upstream.attempts) == 3 and len(clock.slept) == 2


def test_retry_after_is_honoured_and_a_long_one_ends_the_retries() -> None:
    call, upstream, clock, _ = run(reply(503, Retry_After="1"), reply(200))
    assert call().status == 200
    assert clock.slept == [1.0]
    assert upstream.attempts[1][1] - upstream.attempts[0][1] == 1.0

    call, upstream, clock, _ = run(reply(503, Retry_After="5"), reply(200))
    assert call().status == 503  # more than retry_after_max_s (2 s): not worth waiting
    assert len(upstream.attempts) == 1 and clock.slept == []


def test_no_retry_whose_wait_would_end_past_the_deadline() -> None:
    call, upstream, clock, _ = run(reply(503, Retry_After="1"), reply(200), total_s=0.8)
    assert call().status == 503
    assert len(upstream.attempts) == 1 and clock.slept == []


def test_a_spent_budget_refuses_the_retry() -> None:
    spent = RetryBudgetOptions(ratio=0.0, floor=1)
    call, upstream, _, budget = run(unreachable(), unreachable(), reply(200), budget=spent)
    with pytest.raises(AttemptFailed):
        call()
    assert len(upstream.attempts) == 2  # the floor's one retry, then the budget said no
    assert budget.totals() == (1, 1)


def test_an_open_breaker_or_a_passed_deadline_ends_the_retries_at_once() -> None:
    for refusal in (BreakerOpen(3.0, "open"), DeadlineExceeded("the 3s deadline passed")):
        call, upstream, clock, _ = run(unreachable(), refusal, reply(200))
        with pytest.raises(type(refusal)):
            call()
        assert len(upstream.attempts) == 2 and len(clock.slept) == 1


def test_the_budget_window_slides_with_the_clock() -> None:
    clock = ManualClock()
    budget = RetryBudget(
        "up", RetryBudgetOptions(ratio=0.0, floor=1, window_s=10), SharedState.local(), clock
    )
    assert budget.try_spend() and not budget.try_spend()
    clock.advance(10)
    assert budget.try_spend()


def test_retry_after_seconds_and_http_date() -> None:
    now = 1_700_000_000.0
    assert retry_after_s("3", now) == 3.0
    assert retry_after_s(email.utils.formatdate(now + 5, usegmt=True), now) == 5.0
    assert retry_after_s(email.utils.formatdate(now - 60, usegmt=True), now) == 0.0
    assert retry_after_s("soon", now) is None
    assert retry_after_s(None, now) is None


def test_only_idempotent_methods_or_keyed_commands_are_retried() -> None:
    assert retryable("GET", {}) and retryable("PUT", {}) and retryable("DELETE", {})
    assert not retryable("POST", {}) and not retryable("PATCH", {})
    assert retryable("POST", {"Idempotency-Key": "abc"})
