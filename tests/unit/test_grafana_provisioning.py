"""The Grafana files Docker users get: dashboards as defined, datasources they point at."""

from __future__ import annotations

import yaml

from observability.grafana import dashboards
from observability.grafana.queries import provisioned_panels
from servoscope.settings import REPO_ROOT

PROVISIONING = REPO_ROOT / "observability" / "grafana" / "provisioning"


def datasources() -> dict[str, dict]:
    path = PROVISIONING / "datasources" / "datasources.yaml"
    return {source["uid"]: source for source in yaml.safe_load(path.read_text())["datasources"]}


def test_the_committed_dashboards_are_what_the_definitions_generate() -> None:
    for dashboard in dashboards.DASHBOARDS:
        assert dashboards.dashboard_path(dashboard).read_text() == dashboards.render(dashboard), (
            "run `.venv/bin/python -m observability.grafana.dashboards` and commit the result"
        )


def test_every_panel_queries_a_provisioned_datasource_and_exemplars_open_jaeger() -> None:
    sources = datasources()
    assert sources["prometheus"]["type"] == "prometheus"
    assert sources["jaeger"]["type"] == "jaeger"
    destinations = sources["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    # servoscope.metrics names the exemplar label trace_id.
    assert destinations == [{"name": "trace_id", "datasourceUid": "jaeger"}]
    for dashboard in dashboards.DASHBOARDS:
        for panel in dashboards.dashboard_json(dashboard)["panels"]:
            assert panel["datasource"]["uid"] in sources
            assert all(t["datasource"]["uid"] in sources for t in panel["targets"])


def test_every_dashboard_has_the_promised_panels() -> None:
    panels = provisioned_panels()
    by_dashboard = {p.dashboard_uid for p in panels}
    assert by_dashboard == {
        "servoscope-gateway",
        "servoscope-resilience",
        "servoscope-servo",
        "servoscope-slo",
    }
    # Latency panels (quantiles of a histogram) carry exemplars; ages and durations that are
    # gauges (the async path's freshness) have none to carry.
    latency_panels = [p for p in panels if any("_bucket" in t.expr for t in p.targets)]
    assert latency_panels and all(any(t.exemplar for t in p.targets) for p in latency_panels)
