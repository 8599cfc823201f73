"""The chaos runner's own logic: experiments load and validate, control runs switch the
named protection off everywhere, and the suite's verdict needs the contrast."""

from __future__ import annotations

from pathlib import Path

import pytest
from chaoslib.experiment import ensure_experiment_is_valid
from chaoslib.loader import load_experiment

from chaos import runner
from chaos.journal import Judgement

ALL = runner.experiments()
# Run by tests/kubernetes on the chart's release, not by the local suite.
ON_KUBERNETES = [
    runner.load(p) for p in sorted((runner.EXPERIMENTS_DIR / "kubernetes").glob("*.yaml"))
]


def test_the_suite_covers_the_eight_faults() -> None:
    assert {e.name for e in ALL} == {
        "servo-kill",
        "servo-hang",
        "servo-unplug",
        "servo-slow-garble",
        "network-latency-reset",
        "telemetry-down",
        "traffic-spike",
        "redis-down",
    }


@pytest.mark.parametrize("experiment", ALL + ON_KUBERNETES, ids=lambda e: e.name)
def test_each_experiment_is_valid_chaos_toolkit_and_says_what_it_proves(
    experiment, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = load_experiment(str(experiment.path))
    for entry in document["configuration"].values():
        if isinstance(entry, dict) and entry.get("type") == "env":
            monkeypatch.setenv(entry["key"], "set by the runner")  # see runner.chaos_env
    ensure_experiment_is_valid(document)
    assert experiment.fault and experiment.hypothesis
    assert experiment.has_control or experiment.control_reason
    names = {r.get("name") for r in document["rollbacks"]}
    assert names, "every experiment undoes its fault in a rollback"


def test_a_control_run_switches_the_named_stages_off_wherever_they_are_set() -> None:
    hang = next(e for e in ALL if e.name == "servo-hang")
    table = runner.route_table(hang, protected=False)
    assert table["defaults"]["breaker"]["enabled"] is False
    assert table["defaults"]["bulkhead"]["enabled"] is False
    assert table["defaults"]["retry"]["enabled"] is True  # only what the experiment names
    protected = runner.route_table(hang, protected=True)
    assert protected["defaults"]["breaker"]["enabled"] is True


def test_a_protection_that_is_a_setting_is_switched_off_in_the_control_run_only() -> None:
    down = next(e for e in ALL if e.name == "telemetry-down")
    assert down.has_control and "consumer group" in down.switched_off
    assert runner.stack_settings(down, protected=False)["SERVOSCOPE_STREAMS_DELIVERY"] == "latest"
    assert "SERVOSCOPE_STREAMS_DELIVERY" not in runner.stack_settings(down, protected=True)
    assert down.run_timeout_s > runner.RUN_TIMEOUT_S  # a two-minute outage inside


def test_an_experiments_route_changes_are_merged_key_by_key() -> None:
    network = next(e for e in ALL if e.name == "network-latency-reset")
    table = runner.route_table(network, protected=True)
    assert table["upstreams"]["servo"]["instances"] == ["servo_proxy"]
    assert table["upstreams"]["servo"]["balance"] == "round_robin"  # kept from routes.yaml


def outcome(name: str, protected: bool, passed: bool) -> runner.Outcome:
    experiment = next(e for e in ALL if e.name == name)
    judgement = Judgement(experiment.title, [] if passed else ["deviated"])
    return runner.Outcome(experiment, protected, judgement, Path("j.json"), 1.5, 20.0)


def test_the_verdict_needs_protected_runs_to_hold_and_control_runs_to_break() -> None:
    assert (
        runner.verdict([outcome("servo-kill", True, True), outcome("servo-kill", False, False)])
        == []
    )
    failed = runner.verdict([outcome("servo-kill", True, False)])
    assert failed and "failed with protection" in failed[0]
    proves_nothing = runner.verdict([outcome("servo-kill", False, True)])
    assert proves_nothing and "breaker off" in proves_nothing[0]


def test_the_summary_has_one_row_per_experiment_with_both_runs() -> None:
    table = runner.summary([outcome("servo-hang", True, True), outcome("servo-hang", False, False)])
    row = table.splitlines()[2]
    assert row.startswith("| servo-hang |")
    assert "| holds |" in row and "broken: deviated (breaker, bulkhead off)" in row
    assert "1.5 s" in row


def test_a_known_failure_tolerates_only_its_own_figure() -> None:
    spike = next(e for e in ALL if e.name == "traffic-spike")
    assert (spike.known_failure["activity"], spike.known_failure["figure"]) == ("isolation", "p95")

    def run(*reasons: str) -> runner.Outcome:
        return runner.Outcome(
            spike, True, Judgement(spike.title, list(reasons)), Path("j"), None, 1
        )

    p95 = "method activity failed: isolation: isolation broken: [p95] moves: 3 x baseline"
    known = run(p95 + " -- {}")
    assert runner.verdict([known]) == []
    assert "not met here" in runner.summary([known])
    other = run(p95, "rollbacks skipped: 0 of 2 played")
    assert runner.verdict([other]), "a failure beyond the declared probe still fails the suite"
    # The same probe, another figure: the first client's success ratio still judges.
    success = run(p95 + "; [success] state: 98.57% ok < 99.5% -- {}")
    assert runner.verdict([success]), "a second figure of the same probe still fails the suite"
    assert runner.verdict([run("method activity failed: isolation: untagged")])


def _span(span_id: str, kind: str, parent: str | None = None, http: bool = True) -> dict:
    tags = [{"key": "span.kind", "value": kind}]
    if http:
        tags.append({"key": "http.request.method", "value": "GET"})
    refs = [{"refType": "CHILD_OF", "spanID": parent}] if parent else []
    return {"spanID": span_id, "tags": tags, "references": refs}


def test_a_kept_trace_waits_for_the_upstreams_side_of_every_http_call() -> None:
    gateway = [_span("a", "server"), _span("b", "client", parent="a")]
    upstream = [_span("c", "server", parent="b"), _span("d", "client", "c", http=False)]
    assert not runner._answered({"data": [{"spans": gateway}]})  # its upstream not in yet
    assert runner._answered({"data": [{"spans": gateway + upstream}]})  # the serial one has none
    assert runner._answered({"data": [{"spans": [_span("a", "server")]}]})  # refused, no call
