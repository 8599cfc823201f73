"""The breaker keeps pybreaker's state machine, through its public API, and never holds
its lock over the call. Time is a manual clock: no test here sleeps."""

from __future__ import annotations

import threading

import pybreaker
import pytest
from prometheus_client import REGISTRY

from gateway.metrics import BREAKER
from servoscope.outbound import RequestUnsendable, UpstreamTimeout
from servoscope.resilience.breaker import (
    Breaker,
    BreakerOpen,
    BreakerOptions,
    StateMachine,
    Transitions,
)
from servoscope.resilience.clock import ManualClock
from servoscope.resilience.sharedstate import SharedState

CALLS = 8
INSIDE_S = 0.5  # how long the calls wait for each other inside the guarded I/O


def all_inside_at_once(call) -> int:  # type: ignore[no-untyped-def]
    """Run ``call(barrier)`` in CALLS threads, each waiting on the barrier where its I/O
    would be; returns how many got through, which is CALLS only when all of them were
    inside the guarded section together."""
    barrier = threading.Barrier(CALLS, timeout=INSIDE_S)
    through: list[bool] = []

    def one() -> None:
        try:
            call(barrier)
            through.append(True)
        except threading.BrokenBarrierError:
            through.append(False)

    threads = [threading.Thread(target=one) for _ in range(CALLS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return through.count(True)


def breaker(instance: str, clock: ManualClock, **options: object) -> Breaker:
    return Breaker(
        "up", instance, BreakerOptions(**options), SharedState.local(), BREAKER, clock=clock
    )


def transitions(instance: str, from_state: str, to_state: str) -> float:
    labels = {"upstream": "up", "upstream_instance": instance, "from_state": from_state}
    value = REGISTRY.get_sample_value(
        "gateway_breaker_transitions_total", {**labels, "to_state": to_state}
    )
    return value or 0.0


def test_pybreakers_call_serializes_which_is_why_the_io_runs_outside_it() -> None:
    plain = pybreaker.CircuitBreaker(exclude=[threading.BrokenBarrierError])
    assert all_inside_at_once(lambda barrier: plain.call(barrier.wait)) == 0


def test_calls_through_one_breaker_are_inside_their_io_at_the_same_time() -> None:
    guard = breaker("i:concurrent", ManualClock())

    def call(barrier: threading.Barrier) -> None:
        guard.admit()
        barrier.wait()  # the I/O: no lock of pybreaker's is held here
        guard.record(True)

    assert all_inside_at_once(call) == CALLS
    assert guard.state == "closed"


def test_opens_after_failures_then_admits_bounded_probes_and_closes() -> None:
    clock = ManualClock()
    guard = breaker("i:probes", clock, failures=2, reset_s=5.0, half_open_probes=2)
    for _ in range(2):
        assert guard.admit() == "closed"
        guard.record(False)
    assert guard.state == "open"
    clock.advance(1.0)
    with pytest.raises(BreakerOpen) as refused:
        guard.admit()
    assert refused.value.retry_after == pytest.approx(4.0)
    assert not guard.available()
    assert guard.snapshot()["retry_after_s"] == 4
    clock.advance(4.0)
    assert guard.available()
    assert guard.admit() == "half-open" and guard.admit() == "half-open"  # two probes
    with pytest.raises(BreakerOpen):
        guard.admit()
    guard.record(True)
    assert guard.state == "closed"
    assert guard.admit() == "closed"
    assert transitions("i:probes", "closed", "open") == 1
    assert transitions("i:probes", "open", "half-open") == 1
    assert transitions("i:probes", "half-open", "closed") == 1


def test_a_probe_that_never_reports_back_does_not_hold_the_breaker_half_open() -> None:
    # A gateway pod killed (or a call not counted) mid-probe never records the probe's
    # outcome: the next reset period admits a new probe, and its success closes.
    clock = ManualClock()
    guard = breaker("i:lost-probe", clock, failures=1, reset_s=5.0)
    guard.admit()
    guard.record(False)
    clock.advance(5.0)
    assert guard.admit() == "half-open"  # the probe that never reports
    clock.advance(4.9)
    with pytest.raises(BreakerOpen):
        guard.admit()
    clock.advance(0.2)  # the next reset period of the same opening
    assert guard.admit() == "half-open"
    guard.record(True)
    assert guard.state == "closed"


def test_a_failed_probe_opens_it_again_for_a_whole_reset_time() -> None:
    clock = ManualClock()
    guard = breaker("i:reopen", clock, failures=1, reset_s=5.0)
    guard.admit()
    guard.record(False)
    clock.advance(5.0)
    assert guard.admit() == "half-open"
    clock.advance(0.5)
    guard.record(False)
    assert guard.state == "open"
    with pytest.raises(BreakerOpen) as refused:
        guard.admit()
    assert refused.value.retry_after == pytest.approx(5.0)


def test_only_the_upstreams_faults_count() -> None:
    guard = breaker("i:blame", ManualClock(), failures=2)
    for outcome in (404, 409, RequestUnsendable("a space in the path"), 404):
        guard.admit()
        guard.record_outcome(outcome)
    assert guard.state == "closed" and guard.storage.counter == 0
    for outcome in (503, UpstreamTimeout("read timed out")):
        guard.admit()
        guard.record_outcome(outcome)
    assert guard.state == "open"


def test_close_reopens_the_way_and_forgets_the_failures() -> None:
    guard = breaker("i:force", ManualClock(), failures=3)
    guard.admit()
    guard.record(False)
    guard.force("open")
    with pytest.raises(BreakerOpen):
        guard.admit()
    guard.force("close")
    assert guard.state == "closed" and guard.storage.counter == 0
    assert guard.admit() == "closed"
    with pytest.raises(ValueError, match="open or close"):
        guard.force("reset")


def test_a_transition_made_by_another_worker_is_seen_but_not_counted_here() -> None:
    clock = ManualClock()
    guard = breaker("i:seen", clock)
    other_worker = StateMachine(
        state_storage=guard.storage, listeners=[Transitions(BREAKER, "up", "i:other")]
    )
    other_worker.open()
    assert guard.machine.state.name == "open"  # pybreaker notices the stored state
    assert transitions("i:seen", "closed", "open") == 0
    assert transitions("i:other", "closed", "open") == 1
    gauge = REGISTRY.get_sample_value(
        "gateway_breaker_state", {"upstream": "up", "upstream_instance": "i:seen"}
    )
    assert gauge == 1
