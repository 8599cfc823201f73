"""Prometheus metrics shared by every process, with trace-id exemplars.

Each gunicorn worker keeps a plain in-process registry, which is exact and keeps
exemplars (prometheus_client's multiprocess mode would drop them); with several
workers, Prometheus scrapes each worker separately (:mod:`servoscope.scrape_targets`).
Exemplars are only sent in the OpenMetrics format, which Prometheus asks for
in its ``Accept`` header; :func:`exposition` honours that negotiation.
"""

from __future__ import annotations

from opentelemetry import trace
from prometheus_client import REGISTRY, Histogram
from prometheus_client.exposition import choose_encoder

# OpenTelemetry's recommended HTTP duration buckets (seconds).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

SERVER_DURATION = Histogram(
    "http_server_request_duration_seconds",
    "Duration of inbound HTTP requests, by route template.",
    ["http_request_method", "http_route", "http_response_status_code"],
    buckets=DURATION_BUCKETS,
)

CLIENT_DURATION = Histogram(
    "http_client_request_duration_seconds",
    "Duration of outbound HTTP attempts, by upstream.",
    ["http_request_method", "server_upstream", "http_response_status_code"],
    buckets=DURATION_BUCKETS,
)


def trace_exemplar() -> dict[str, str] | None:
    """The current sampled trace id as an exemplar, or None when there is none."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid and ctx.trace_flags.sampled:
        return {"trace_id": format(ctx.trace_id, "032x")}
    return None


def observe(histogram: Histogram, seconds: float, *labels: str) -> None:
    histogram.labels(*labels).observe(seconds, exemplar=trace_exemplar())


def exposition(accept_header: str | None) -> tuple[bytes, str]:
    """Render the registry in the format the scraper asked for (OpenMetrics keeps exemplars)."""
    encoder, content_type = choose_encoder(accept_header or "")
    return encoder(REGISTRY), content_type
