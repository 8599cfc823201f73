"""The stack's SLOs, and the recording and alerting rules they become (rules/slo.rules.yml).

Each SLO is a ratio of bad events to all events over a 30-day budget. Alerts follow the
multi-window, multi-burn-rate pattern of Google's SRE workbook (chapter "Alerting on
SLOs"): a page when the budget burns fast — 2 % of it in 1 h (14.4x) or 5 % in 6 h (6x) —
and a ticket when it burns steadily — 10 % in 1 d (3x) or in 3 d (1x). Each long window is
paired with a short one (1/12 of it) so an alert stops soon after the burn does.

Edit the SLOs here, then regenerate the file (a unit test fails while they differ)::

    .venv/bin/python -m observability.prometheus.slo_rules
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

RULES_FILE = Path(__file__).parent / "rules" / "slo.rules.yml"

REQUESTS = "http_server_request_duration_seconds"
# Probes and scrapes are not user traffic.
NOT_PROBES = 'http_route!~"/healthz|/readyz|/metrics"'
SERVO_COMMAND = 'http_route="/api/servo/set-position",http_request_method="POST"'

WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d")
# (severity, [(long window, short window, burn-rate factor)], for)
BURN_ALERTS = (
    ("page", [("1h", "5m", 14.4), ("6h", "30m", 6.0)], "2m"),
    ("ticket", [("1d", "2h", 3.0), ("3d", "6h", 1.0)], "15m"),
)


@dataclass(frozen=True)
class Slo:
    name: str  # the `slo` label
    alert: str  # alert name prefix
    objective: float  # fraction of good events
    description: str
    selector: str  # which requests count
    latency_le: str | None = None  # a latency SLO: good = faster than this bucket bound
    # A time-based SLO: a recorded 0/1 series (1 = bad); the error ratio is its average.
    bad_series: str | None = None

    def error_ratio(self, window: str) -> str:
        if self.bad_series is not None:
            return f"avg_over_time({self.bad_series}[{window}])"
        total = f"sum(rate({REQUESTS}_count{{{self.selector}}}[{window}]))"
        if self.latency_le is None:
            bad = (
                f'sum(rate({REQUESTS}_count{{{self.selector},http_response_status_code=~"5.."}}'
                f"[{window}]))"
            )
            # `or vector(0)`: no 5xx series yet means no errors, not no data.
            return f"({bad} or vector(0))\n/\n{total}"
        good = f'sum(rate({REQUESTS}_bucket{{{self.selector},le="{self.latency_le}"}}[{window}]))'
        return f"1 - (\n  {good}\n  /\n  {total}\n)"


SLOS = (
    Slo(
        "gateway-availability",
        "GatewayAvailability",
        0.995,
        "gateway requests answered without a 5xx",
        f'job="gateway",{NOT_PROBES}',
    ),
    Slo(
        "gateway-latency",
        "GatewayLatency",
        0.99,
        "gateway requests answered within 500 ms",
        f'job="gateway",{NOT_PROBES}',
        latency_le="0.5",
    ),
    Slo(
        "servo-command-availability",
        "ServoCommandAvailability",
        0.999,
        "POST /api/servo/set-position answered without a 5xx",
        f'job="gateway",{SERVO_COMMAND}',
    ),
    Slo(
        "servo-command-latency",
        "ServoCommandLatency",
        0.99,
        "POST /api/servo/set-position answered within 250 ms",
        f'job="gateway",{SERVO_COMMAND}',
        latency_le="0.25",
    ),
    Slo(
        "telemetry-ingest-freshness",
        "TelemetryIngestFreshness",
        0.99,
        "the time samples are published with the newest stored one at most 5 s old",
        "",
        bad_series="telemetry:ingest_stale:bool",
    ),
)


def ratio_name(window: str) -> str:
    return f"slo:sli_error:ratio_rate{window}"


def burn_condition(slo: Slo, pairs: list[tuple[str, str, float]]) -> str:
    budget = 1 - slo.objective
    branches = [
        f'(\n  {ratio_name(long)}{{slo="{slo.name}"}} > ({factor:g} * {budget:.4g})\n'
        f'and\n  {ratio_name(short)}{{slo="{slo.name}"}} > ({factor:g} * {budget:.4g})\n)'
        for long, short, factor in pairs
    ]
    return "\nor\n".join(branches)


def rule_groups() -> dict:
    recording = []
    alerts = []
    for slo in SLOS:
        labels = {"slo": slo.name}
        recording.append(
            {
                "record": "slo:objective:ratio",
                "expr": f"vector({slo.objective})",
                "labels": labels,
            }
        )
        recording.append(
            {
                "record": "slo:error_budget:ratio",
                "expr": f"vector({1 - slo.objective:.4g})",
                "labels": labels,
            }
        )
        recording += [
            {"record": ratio_name(w), "expr": slo.error_ratio(w), "labels": labels} for w in WINDOWS
        ]
        for severity, pairs, hold in BURN_ALERTS:
            windows = ", ".join(f"{long}/{short} at {factor:g}x" for long, short, factor in pairs)
            alerts.append(
                {
                    "alert": f"{slo.alert}BudgetBurn",
                    "expr": burn_condition(slo, pairs),
                    "for": hold,
                    "labels": {"severity": severity, "slo": slo.name},
                    "annotations": {
                        "summary": f"{slo.name} burns its error budget ({windows})",
                        "description": (
                            f"SLO: {slo.objective:.1%} of {slo.description} over 30 days. "
                            "Open the SLO dashboard and follow an exemplar to its trace."
                        ),
                    },
                }
            )
    return {
        "groups": [
            {"name": "slo-recording", "rules": recording},
            {"name": "slo-alerts", "rules": alerts},
        ]
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line expressions as literal blocks, so the file reads like hand-written rules."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render() -> str:
    header = (
        "# Generated by observability/prometheus/slo_rules.py from the SLOs defined there;\n"
        "# edit that file and run `.venv/bin/python -m observability.prometheus.slo_rules`.\n"
    )
    return header + yaml.dump(rule_groups(), Dumper=_Dumper, sort_keys=False, width=100)


if __name__ == "__main__":
    RULES_FILE.write_text(render())
    print(f"wrote {RULES_FILE}")
