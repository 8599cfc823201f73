"""The breaker keeps pybreaker's state machine but never holds its lock over the call."""

from __future__ import annotations

import threading
import time

import pybreaker
import pytest

from gateway.metrics import BREAKER
from servoscope.resilience.breaker import Breaker, BreakerOpen, BreakerOptions
from servoscope.resilience.sharedstate import SharedState

CALLS, CALL_S = 8, 0.2


def run_concurrently(call) -> float:
    threads = [threading.Thread(target=call) for _ in range(CALLS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - started


def test_pybreakers_call_serializes_which_is_why_we_do_not_use_it() -> None:
    plain = pybreaker.CircuitBreaker()
    elapsed = run_concurrently(lambda: plain.call(time.sleep, CALL_S / 4))
    assert elapsed >= CALLS * CALL_S / 4 * 0.9


def test_concurrent_slow_calls_through_one_breaker_take_one_calls_time() -> None:
    breaker = Breaker("up", "i:1", BreakerOptions(), SharedState.local(), BREAKER)

    def call() -> None:
        breaker.admit()
        time.sleep(CALL_S)
        breaker.record(True)

    assert run_concurrently(call) < CALL_S * 2


def test_opens_after_failures_then_admits_bounded_probes_and_closes() -> None:
    breaker = Breaker(
        "up",
        "i:2",
        BreakerOptions(failures=2, reset_s=0.2, half_open_probes=2),
        SharedState.local(),
        BREAKER,
    )
    for _ in range(2):
        breaker.admit()
        breaker.record(False)
    with pytest.raises(BreakerOpen) as refused:
        breaker.admit()
    assert 0 < refused.value.retry_after <= 0.2
    assert not breaker.available()
    time.sleep(0.25)
    assert breaker.admit() is True and breaker.admit() is True  # two probes
    with pytest.raises(BreakerOpen):
        breaker.admit()
    breaker.record(True)
    assert breaker.state == "closed"
    assert breaker.admit() is False
