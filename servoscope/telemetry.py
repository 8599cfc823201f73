"""OpenTelemetry tracing set-up, once per process.

gunicorn loads the app in each worker after it forks (the stack never uses
``--preload``), so :func:`setup_tracing` runs in the worker, where the batch
exporter's thread must live. Spans go over OTLP/HTTP to Jaeger.
"""

from __future__ import annotations

import os
import socket

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from servoscope.settings import Settings, SettingsError, env_name

VERSION = "0.1.0"

_provider: TracerProvider | None = None


def setup_tracing(service_name: str, settings: Settings) -> None:
    """Install a tracer provider exporting to the stack's Jaeger; idempotent per process."""
    global _provider
    if _provider is not None or not settings.get("telemetry", "enabled"):
        return
    resource = Resource.create(
        {
            "service.name": service_name,
            "service.version": VERSION,
            "service.instance.id": f"{socket.gethostname()}:{os.getpid()}",
            "deployment.environment.name": settings.get("telemetry", "environment"),
        }
    )
    provider = TracerProvider(
        resource=resource, sampler=ParentBased(TraceIdRatioBased(sampling_ratio(settings)))
    )
    endpoint = f"{settings.url('jaeger_otlp_http')}/v1/traces"
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=endpoint, timeout=2), schedule_delay_millis=500
        )
    )
    trace.set_tracer_provider(provider)
    _provider = provider


def sampling_ratio(settings: Settings) -> float:
    """``[telemetry] sampling_ratio``: the share of traces started here that are recorded
    and exported (1.0 on the local stack; what it costs per request: BENCHMARKS.md)."""
    ratio = settings.get("telemetry", "sampling_ratio")
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio <= 1:
        raise SettingsError(
            f"{settings.source}: [telemetry] sampling_ratio = {ratio!r} must be a number from "
            f"0 to 1 (1.0 traces every request, 0.01 one in a hundred); set it in the file or "
            f"with {env_name('telemetry', 'sampling_ratio')}."
        )
    return float(ratio)


def shutdown_tracing() -> None:
    """Flush buffered spans; called when a worker exits so no trace is lost."""
    if _provider is not None:
        _provider.shutdown()
