"""The stack's Grafana dashboards, defined once here and written as JSON for provisioning.

Grafana loads ``dashboards/*.json`` (see ``provisioning/``). Those files are generated
from the definitions below, so every panel has the same shape: a Prometheus query per
target, a unit, exemplars on latency histograms (each links to its trace in Jaeger through
the datasource's ``exemplarTraceIdDestinations``). Edit here, then regenerate::

    .venv/bin/python -m observability.grafana.dashboards

A unit test fails while the JSON files and these definitions differ, and a system test runs
every panel's query against a live stack and fails on any panel without data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from observability.grafana.queries import DASHBOARD_DIR

PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}

RATE = "$__rate_interval"
USER_TRAFFIC = 'http_route!~"/healthz|/readyz|/metrics"'
GATEWAY = f'job="gateway",{USER_TRAFFIC}'
SERVO = f'job="servo-controller",{USER_TRAFFIC}'


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    exemplar: bool = False


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"  # timeseries | stat | state-timeline | row (a heading, no query)
    width: int = 12
    mappings: tuple[tuple[str, str], ...] = ()  # value -> text, for states
    stacked: bool = False


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...] = field(default_factory=tuple)


def quantiles(metric: str, selector: str, by: str, legend: str) -> tuple[Query, ...]:
    """p50 and p99 of a histogram, with exemplars (trace ids) on the p99 series."""
    return tuple(
        Query(
            f"histogram_quantile({q}, sum by (le, {by}) "
            f"(rate({metric}_bucket{{{selector}}}[{RATE}])))",
            f"p{round(q * 100)} {legend}",
            exemplar=q == 0.99,
        )
        for q in (0.5, 0.99)
    )


GATEWAY_OVERVIEW = Dashboard(
    "servoscope-gateway",
    "servoscope / gateway overview",
    "RED per route through the gateway, status codes, latency with exemplars, upstream calls.",
    (
        Panel(
            "Requests per second by route",
            "User traffic through the gateway (probes and scrapes excluded), summed over workers.",
            (
                Query(
                    "sum by (http_request_method, http_route) "
                    f"(rate(http_server_request_duration_seconds_count{{{GATEWAY}}}[{RATE}]))",
                    "{{http_request_method}} {{http_route}}",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "Responses by status code",
            "4xx are the callers' mistakes (they name the field to fix); 5xx burn the SLO.",
            (
                Query(
                    "sum by (http_response_status_code) "
                    f"(rate(http_server_request_duration_seconds_count{{{GATEWAY}}}[{RATE}]))",
                    "{{http_response_status_code}}",
                ),
            ),
            unit="reqps",
            stacked=True,
        ),
        Panel(
            "Latency by route (click an exemplar for its trace)",
            "p50 and p99 from the gateway's histogram; the dots are exemplars, one trace each.",
            quantiles(
                "http_server_request_duration_seconds", GATEWAY, "http_route", "{{http_route}}"
            ),
            unit="s",
        ),
        Panel(
            "5xx ratio by route",
            "Share of each route's responses that are server errors (recording rule, 1m).",
            (
                Query(
                    'job_route:http_server_request_errors:ratio_rate1m{job="gateway"}',
                    "{{http_request_method}} {{http_route}}",
                ),
            ),
            unit="percentunit",
        ),
        Panel(
            "Upstream attempts by status",
            "Every attempt the gateway makes (retries included), by upstream and status.",
            (
                Query(
                    "sum by (server_upstream, http_response_status_code) "
                    f'(rate(http_client_request_duration_seconds_count{{job="gateway"}}[{RATE}]))',
                    "{{server_upstream}} {{http_response_status_code}}",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "Upstream attempt latency",
            "How long each upstream takes to answer one attempt, with exemplars.",
            quantiles(
                "http_client_request_duration_seconds",
                'job="gateway"',
                "server_upstream",
                "{{server_upstream}}",
            ),
            unit="s",
        ),
        Panel(
            "Workers scraped",
            "gunicorn workers Prometheus scrapes per service (one target each).",
            (Query('count by (job) (up{job!="prometheus"} == 1)', "{{job}}"),),
            kind="stat",
        ),
        Panel(
            "Resident memory per worker",
            "Process metrics of every worker of every service.",
            (
                Query(
                    'process_resident_memory_bytes{job!="prometheus"}',
                    "{{job}} {{instance}}",
                ),
            ),
            unit="bytes",
        ),
    ),
)

BREAKER_STATES = (("0", "closed"), ("1", "open"), ("2", "half-open"))

RESILIENCE = Dashboard(
    "servoscope-resilience",
    "servoscope / resilience",
    "The gateway's pipeline at work: breakers, retries against their budget, bulkheads, "
    "rate limits, fallbacks.",
    (
        Panel(
            "Breaker state per upstream instance",
            "0 closed, 1 open, 2 half-open, per upstream and upstream instance.",
            (
                Query(
                    "max by (upstream, upstream_instance) (gateway_breaker_state)",
                    "{{upstream}} {{upstream_instance}}",
                ),
            ),
            kind="state-timeline",
            mappings=BREAKER_STATES,
            width=24,
        ),
        Panel(
            "Breaker transitions",
            "State changes per upstream, by the state entered.",
            (
                Query(
                    "sum by (upstream, to_state) "
                    f"(increase(gateway_breaker_transitions_total[{RATE}]))",
                    "{{upstream}} → {{to_state}}",
                ),
            ),
        ),
        Panel(
            "Calls rejected by an open breaker",
            "Answered 503 with Retry-After without touching the upstream.",
            (
                Query(
                    f"sum by (upstream) (rate(gateway_breaker_rejections_total[{RATE}]))",
                    "{{upstream}}",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "Retries by outcome",
            "Retried attempts per upstream and what became of them.",
            (
                Query(
                    f"sum by (upstream, outcome) (rate(gateway_retries_total[{RATE}]))",
                    "{{upstream}} {{outcome}}",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "Retry load vs budget",
            "Retries as a share of upstream attempts (the budget allows about 20 %), and "
            "retries refused because the budget was spent.",
            (
                Query(
                    f"sum by (upstream) (rate(gateway_retries_total[{RATE}])) / sum by (upstream) "
                    '(label_replace(rate(http_client_request_duration_seconds_count{job="gateway"}'
                    f'[{RATE}]), "upstream", "$1", "server_upstream", "(.*)"))',
                    "retry share {{upstream}}",
                ),
                Query(
                    f"sum by (upstream) (rate(gateway_retry_budget_exhausted_total[{RATE}]))",
                    "budget exhausted {{upstream}} (/s)",
                ),
            ),
        ),
        Panel(
            "Bulkhead saturation",
            "Calls in flight and waiting per upstream, summed over gateway workers.",
            (
                Query("sum by (upstream) (gateway_bulkhead_in_flight)", "in flight {{upstream}}"),
                Query("sum by (upstream) (gateway_bulkhead_queued)", "queued {{upstream}}"),
            ),
        ),
        Panel(
            "Bulkhead rejections",
            "Calls turned away (503) because the bulkhead was full.",
            (
                Query(
                    f"sum by (upstream) (rate(gateway_bulkhead_rejections_total[{RATE}]))",
                    "{{upstream}}",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "Rate limited",
            "Requests answered 429 with Retry-After, per route.",
            (
                Query(
                    f"sum by (route) (rate(gateway_rate_limited_total[{RATE}]))",
                    "{{route}}",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "Fallbacks served",
            "Degraded answers served instead of an error, per route.",
            (Query(f"sum by (route) (rate(gateway_fallbacks_total[{RATE}]))", "{{route}}"),),
            unit="reqps",
        ),
        Panel(
            "Shared state (Redis)",
            "Where breakers, rate-limit windows and retry budgets live: shared in Redis by "
            "every worker, local to one worker by configuration, or local because a worker "
            "lost Redis (a fallback: each worker then decides alone).",
            (
                Query(
                    "min(gateway_shared_state_up) + 2 * (1 - max(gateway_shared_state_configured))",
                    "shared state",
                ),
            ),
            kind="stat",
            mappings=(("0", "Redis lost: local"), ("1", "shared"), ("2", "local by config")),
        ),
    ),
)

SERVO_CONTROLLER = Dashboard(
    "servoscope-servo",
    "servoscope / servo controller",
    "The serial line to the Maestro: exchange latency, errors, the device, and where each "
    "servo is versus where it was told to go; then the async telemetry path behind it.",
    (
        Panel(
            "Serial exchange latency by command (click an exemplar for its trace)",
            "Bytes out to bytes in on the serial port; exemplars lead to the serial span.",
            quantiles("servo_serial_exchange_duration_seconds", "", "command", "{{command}}"),
            unit="s",
        ),
        Panel(
            "Serial exchanges per second",
            "Commands and queries sent to the device.",
            (
                Query(
                    "sum by (command) "
                    f"(rate(servo_serial_exchange_duration_seconds_count[{RATE}]))",
                    "{{command}}",
                ),
            ),
            unit="ops",
        ),
        Panel(
            "Serial errors by kind",
            "Timeouts, garbled replies, device error bits, disconnects.",
            (
                Query(
                    f"sum by (kind) (rate(servo_serial_errors_total[{RATE}]))",
                    "{{kind}}",
                ),
            ),
            unit="ops",
        ),
        Panel(
            "Device connected",
            "1 while the servo controller holds an open, answering device.",
            (Query("min(servo_device_connected)", "connected"),),
            kind="stat",
            mappings=(("0", "disconnected"), ("1", "connected")),
        ),
        Panel(
            "Target vs actual angle per channel",
            "Where each servo was told to go, and where the device reports it is.",
            (
                Query("servo_target_angle_degrees", "target ch{{channel}}"),
                Query("servo_actual_angle_degrees", "actual ch{{channel}}"),
            ),
            unit="degree",
            width=24,
        ),
        Panel(
            "Servo controller requests by route",
            "What the gateway asks of the servo controller.",
            (
                Query(
                    "sum by (http_request_method, http_route, http_response_status_code) "
                    f"(rate(http_server_request_duration_seconds_count{{{SERVO}}}[{RATE}]))",
                    "{{http_request_method}} {{http_route}} {{http_response_status_code}}",
                ),
            ),
            unit="reqps",
        ),
        Panel(
            "Servo controller latency by route",
            "Time inside the servo controller, serial exchange included, with exemplars.",
            quantiles(
                "http_server_request_duration_seconds", SERVO, "http_route", "{{http_route}}"
            ),
            unit="s",
        ),
        Panel(
            "Async telemetry (Redis Streams)",
            "Samples and device and move events on their way to the telemetry logger.",
            (),
            kind="row",
        ),
        Panel(
            "Stream backlog",
            "Entries not yet delivered to the logger's consumer group (lag) and delivered but "
            "not yet acknowledged (pending). Rises while every logger is down, then drains.",
            (
                Query("max by (stream) (telemetry_stream_lag_entries)", "lag {{stream}}"),
                Query("max by (stream) (telemetry_stream_pending_entries)", "pending {{stream}}"),
            ),
        ),
        Panel(
            "Ingest freshness and oldest unacknowledged entry",
            "Age of the newest stored sample (the freshness SLO allows 5 s), and how long the "
            "oldest entry not yet acknowledged has waited in its stream.",
            (
                Query("min(telemetry_ingest_freshness_seconds)", "newest stored sample"),
                Query(
                    "max by (stream) (telemetry_stream_oldest_pending_age_seconds)",
                    "oldest waiting {{stream}}",
                ),
            ),
            unit="s",
        ),
        Panel(
            "Entries published, stored, redelivered",
            "Published by the servo controller and motion planner; stored and acknowledged by "
            "the loggers; claimed again from a logger that died holding them.",
            (
                Query(
                    f"sum by (stream) (rate(stream_published_entries_total[{RATE}]))",
                    "published {{stream}}",
                ),
                Query(
                    f"sum by (stream) (rate(telemetry_stream_entries_handled_total[{RATE}]))",
                    "stored {{stream}}",
                ),
                Query(
                    f"sum by (stream) (rate(telemetry_stream_redeliveries_total[{RATE}]))",
                    "redelivered {{stream}}",
                ),
            ),
            unit="ops",
        ),
        Panel(
            "Publisher buffer and losses",
            "Entries buffered in a publisher while Redis is away, against its bound; entries "
            "dropped beyond the bound, and trimmed from a stream before any logger stored them.",
            (
                Query("sum by (stream) (stream_publish_buffered_entries)", "buffered {{stream}}"),
                Query("max by (stream) (stream_publish_buffer_max_entries)", "bound {{stream}}"),
                Query(
                    "sum by (stream) (stream_publish_dropped_entries_total)", "dropped {{stream}}"
                ),
                Query(
                    "max by (stream) (telemetry_stream_trimmed_unconsumed_entries)",
                    "trimmed unconsumed {{stream}}",
                ),
            ),
        ),
    ),
)


def burn_rate(window: str) -> Query:
    return Query(
        f"slo:sli_error:ratio_rate{window} / on (slo) slo:error_budget:ratio",
        f"{{{{slo}}}} {window}",
    )


SLO = Dashboard(
    "servoscope-slo",
    "servoscope / SLOs and burn rate",
    "The four SLOs of observability/prometheus/slo_rules.py: how much budget is left and how "
    "fast it burns. Alerts page at 14.4x (1h and 5m) or 6x (6h and 30m).",
    (
        Panel(
            "SLI over the last hour",
            "Share of good events per SLO (availability: no 5xx; latency: under threshold).",
            (Query("1 - slo:sli_error:ratio_rate1h", "{{slo}}"),),
            unit="percentunit",
            kind="stat",
        ),
        Panel(
            "Error budget left (30 days)",
            "1 = untouched, 0 = spent, below 0 = the SLO is broken for this period.",
            (
                Query(
                    "1 - slo:sli_error:ratio_rate30d / on (slo) slo:error_budget:ratio",
                    "{{slo}}",
                ),
            ),
            unit="percentunit",
            kind="stat",
        ),
        Panel(
            "Burn rate, fast windows",
            "How many times faster than sustainable the budget burns; the page fires when the "
            "1h and 5m burn both exceed 14.4.",
            (burn_rate("5m"), burn_rate("1h")),
            width=24,
        ),
        Panel(
            "Burn rate, slow windows",
            "The 6h/30m pair pages above 6; the 3d/6h pair opens a ticket above 1.",
            (burn_rate("30m"), burn_rate("6h"), burn_rate("3d")),
            width=24,
        ),
        Panel(
            "Burn-rate alerts firing",
            "SLO alerts firing now, by severity (0 when none).",
            (
                Query(
                    'count by (severity) (ALERTS{alertname=~".+BudgetBurn",alertstate="firing"})'
                    ' or on () label_replace(vector(0), "severity", "none", "", "")',
                    "{{severity}}",
                ),
            ),
            kind="stat",
        ),
    ),
)

DASHBOARDS = (GATEWAY_OVERVIEW, RESILIENCE, SERVO_CONTROLLER, SLO)


def panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict:
    custom: dict = {}
    if panel.kind == "timeseries":
        custom = {"lineWidth": 1, "fillOpacity": 10 if panel.stacked else 0}
        if panel.stacked:
            custom["stacking"] = {"mode": "normal", "group": "A"}
    mappings = (
        [
            {
                "type": "value",
                "options": {
                    value: {"text": text, "index": i}
                    for i, (value, text) in enumerate(panel.mappings)
                },
            }
        ]
        if panel.mappings
        else []
    )
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": PROMETHEUS,
        "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {
            "defaults": {"unit": panel.unit, "custom": custom, "mappings": mappings},
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}}
        if panel.kind != "stat"
        else {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": PROMETHEUS,
                "expr": query.expr,
                "legendFormat": query.legend,
                "exemplar": query.exemplar,
                "range": True,
            }
            for i, query in enumerate(panel.queries)
        ],
    }


def row_json(panel: Panel, panel_id: int, y: int) -> dict:
    return {
        "id": panel_id,
        "type": "row",
        "title": panel.title,
        "datasource": PROMETHEUS,
        "targets": [],
        "collapsed": False,
        "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
        "panels": [],
    }


def dashboard_json(dashboard: Dashboard) -> dict:
    panels = []
    x = y = 0
    for panel_id, panel in enumerate(dashboard.panels, start=1):
        if panel.kind == "row":
            y += 8 if x else 0
            panels.append(row_json(panel, panel_id, y))
            x, y = 0, y + 1
            continue
        if x + panel.width > 24:
            x, y = 0, y + 8
        panels.append(panel_json(panel, panel_id, x, y))
        x += panel.width
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["servoscope"],
        "timezone": "browser",
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": panels,
    }


def render(dashboard: Dashboard) -> str:
    return json.dumps(dashboard_json(dashboard), indent=2, ensure_ascii=False) + "\n"


def dashboard_path(dashboard: Dashboard) -> Path:
    return DASHBOARD_DIR / f"{dashboard.uid.removeprefix('servoscope-')}.json"


if __name__ == "__main__":
    DASHBOARD_DIR.mkdir(exist_ok=True)
    for each in DASHBOARDS:
        dashboard_path(each).write_text(render(each))
        print(f"wrote {dashboard_path(each)}")
