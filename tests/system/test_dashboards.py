"""Every Grafana panel has data: each panel's queries run against a live stack's Prometheus
after some traffic, exactly as the provisioned dashboards send them."""

from __future__ import annotations

import math

import pytest

from observability.grafana.queries import PanelQueries, provisioned_panels
from stack.ephemeral import Stack, http, wait_for
from stack.traffic import rated_traffic

PANELS = provisioned_panels()


def has_data(result: list[dict]) -> bool:
    return any(not math.isnan(float(series["value"][1])) for series in result)


@pytest.fixture(scope="module")
def busy_stack(stack: Stack) -> Stack:
    statuses = rated_traffic(stack, rounds=20)
    assert statuses.get(200) and statuses.get(422) and statuses.get(401), statuses
    return stack


def check_panel_has_data(stack: Stack, panel: PanelQueries) -> None:
    """Every query of ``panel`` answers with data on ``stack``'s Prometheus, and each latency
    query has exemplars. The Kubernetes test runs the same check on the in-cluster one."""
    assert panel.targets, f"{panel.key} has no query"
    empty = [
        target.as_sent()
        for target in panel.targets
        if not has_data(stack.prometheus_query(target.as_sent()))
    ]
    assert not empty, f"{panel.key}: no data for {empty}"
    # What a click on a latency panel needs: exemplars, each the id of a trace.
    for target in (t for t in panel.targets if t.exemplar):
        found = stack.prometheus_exemplars(target.as_sent())
        assert any(series["exemplars"] for series in found), f"{panel.key}: no exemplars"


@pytest.mark.parametrize("panel", PANELS, ids=[panel.key for panel in PANELS])
def test_every_panel_query_has_data(busy_stack: Stack, panel: PanelQueries) -> None:
    check_panel_has_data(busy_stack, panel)


def test_an_exemplar_on_the_gateway_latency_panel_opens_its_trace(busy_stack: Stack) -> None:
    panel = next(p for p in PANELS if p.key.startswith("servoscope-gateway: Latency by route"))
    target = next(t for t in panel.targets if t.exemplar)
    found = busy_stack.prometheus_exemplars(target.as_sent())
    commands = [s for s in found if s["seriesLabels"]["http_route"] == "/api/servo/set-position"]
    trace_id = commands[0]["exemplars"][-1]["labels"]["trace_id"]

    def trace():
        reply = http("GET", f"{busy_stack.url('jaeger_ui')}/api/traces/{trace_id}")
        return reply.json()["data"][0] if reply.status == 200 else None

    spans = wait_for(trace, timeout=15, interval=0.3, message=f"trace {trace_id} in Jaeger")[
        "spans"
    ]
    assert any(s["operationName"] == "POST /api/servo/set-position" for s in spans)
    assert any(s["operationName"].startswith("serial ") for s in spans), "down to the serial byte"
