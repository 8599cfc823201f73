"""The during-fault probes judge against the same run: its baseline, the machine's own
slowdown (the bystander), and what the protection saves."""

from __future__ import annotations

import time

import pytest
from chaoslib.exceptions import ActivityFailed

from chaos import probes, traffic


def answers(route: str, start: float, latencies: list[float], status: int = 200, **extra):
    return [
        traffic.Answer(route, start + i * 0.01, status, ms, extra.get("headers", {}), None, False)
        for i, ms in enumerate(latencies)
    ]


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch) -> traffic.Traffic:
    fresh = traffic.Traffic()
    monkeypatch.setattr(traffic, "_traffic", fresh)
    now = time.time()
    fresh.marks.update({"start": now - 30, "fault": now - 20, "open": now - 15})
    return fresh


def test_a_slowdown_the_whole_machine_shows_is_not_the_faults(run: traffic.Traffic) -> None:
    start, fault = run.marks["start"], run.marks["fault"]
    run.answers += answers("moves", start, [100.0] * 100) + answers("moves", fault, [220.0] * 100)
    run.answers += answers(traffic.BYSTANDER, start, [2.0] * 100)
    run.answers += answers(traffic.BYSTANDER, fault, [4.0] * 100)  # everything 2x slower
    report = probes.isolation(["moves"])
    assert report["unaffected_p95"]["ratio"] == 2.2
    assert report["unaffected_p95"]["judged_ratio"] == 1.0


def test_a_slowdown_only_the_stack_shows_breaks_isolation(run: traffic.Traffic) -> None:
    start, fault = run.marks["start"], run.marks["fault"]
    run.answers += answers("moves", start, [100.0] * 100) + answers("moves", fault, [200.0] * 100)
    run.answers += answers(traffic.BYSTANDER, start, [2.0] * 200)
    with pytest.raises(ActivityFailed, match=r"\[p95\] moves: 200.0 ms = 2.00 x"):
        probes.isolation(["moves"])


def test_a_rise_within_a_scheduling_quantum_is_not_judged(run: traffic.Traffic) -> None:
    start, fault = run.marks["start"], run.marks["fault"]
    run.answers += answers("moves", start, [24.0] * 100) + answers("moves", fault, [40.0] * 100)
    run.answers += answers(traffic.BYSTANDER, start, [2.0] * 200)
    assert probes.isolation(["moves"])["unaffected_p95"]["ratio"] == 1.67


def test_refusals_are_judged_against_the_wait_they_save(run: traffic.Traffic) -> None:
    opened = run.marks["open"]
    refused = {"headers": {"Retry-After": "1"}}
    run.answers += answers("current-angle", opened, [30.0] * 50, 503, **refused)
    run.answers += answers("moves", opened, [20.0] * 50)
    assert probes.fails_fast(["current-angle"], 3.0, attempt_timeout_s=1.0)["max_p99_ms"] == 100
    run.answers += answers("current-angle", opened + 1, [150.0] * 10, 503, **refused)
    with pytest.raises(ActivityFailed, match=r"\[p99\] current-angle: 150.0 ms > 100 ms"):
        probes.fails_fast(["current-angle"], 3.0, attempt_timeout_s=1.0)
    # A machine so loaded that healthy answers take 400 ms: a 150 ms refusal is fast, and
    # the slowest of ~50 refusals may sit a scheduling quantum above the healthy p99.
    run.answers += answers("moves", opened + 1, [400.0] * 50)
    assert probes.fails_fast(["current-angle"], 3.0, attempt_timeout_s=1.0)["max_p99_ms"] == 420


def test_a_refusal_that_waits_half_the_timeout_is_never_fast(run: traffic.Traffic) -> None:
    opened = run.marks["open"]
    refused = {"headers": {"Retry-After": "1"}}
    # Healthy answers at 900 ms: an unprotected call (1 s timeout) would pass beside them.
    run.answers += answers("moves", opened, [900.0] * 50)
    run.answers += answers("current-angle", opened, [600.0] * 50, 503, **refused)
    with pytest.raises(ActivityFailed, match=r"\[p99\] current-angle: 600.0 ms > 500 ms"):
        probes.fails_fast(["current-angle"], 3.0, attempt_timeout_s=1.0)
