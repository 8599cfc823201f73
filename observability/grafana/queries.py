"""The provisioned dashboards' panels and their queries, as Grafana sends them to Prometheus.

Used by the system test that runs every panel against a live stack and by the PNG
previews, so both read exactly the JSON that Grafana loads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DASHBOARD_DIR = Path(__file__).parent / "dashboards"

# Grafana fills these in per request; these values suit a stack scraped every 2 s.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "10s", "$__range": "30m"}


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str
    exemplar: bool

    def as_sent(self) -> str:
        """The expression with Grafana's variables replaced, ready for Prometheus's API."""
        expr = self.expr
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        return expr


@dataclass(frozen=True)
class PanelQueries:
    dashboard_uid: str
    dashboard_title: str
    title: str
    kind: str
    unit: str
    mappings: dict[str, str]
    targets: tuple[Target, ...]

    @property
    def key(self) -> str:
        """``<dashboard uid>: <panel title>``: how tests and previews name a panel."""
        return f"{self.dashboard_uid}: {self.title}"


def load_dashboards(directory: Path = DASHBOARD_DIR) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))]


def panels_of(dashboard: dict) -> list[PanelQueries]:
    found = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue  # a heading, no query
        defaults = panel.get("fieldConfig", {}).get("defaults", {})
        mappings = {
            value: option["text"]
            for mapping in defaults.get("mappings", [])
            for value, option in mapping.get("options", {}).items()
        }
        found.append(
            PanelQueries(
                dashboard["uid"],
                dashboard["title"],
                panel["title"],
                panel["type"],
                defaults.get("unit", "short"),
                mappings,
                tuple(
                    Target(t["expr"], t.get("legendFormat", ""), bool(t.get("exemplar")))
                    for t in panel.get("targets", [])
                ),
            )
        )
    return found


def provisioned_panels(directory: Path = DASHBOARD_DIR) -> list[PanelQueries]:
    """Every panel of every dashboard Grafana provisions, in file and panel order."""
    return [panel for dashboard in load_dashboards(directory) for panel in panels_of(dashboard)]
