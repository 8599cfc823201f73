"""servoscope's shared package: what the gateway and every service use, written once.

- :mod:`servoscope.settings`  ports and options from one TOML file plus env overrides
- :mod:`servoscope.problems`  RFC 9457 problem+json errors
- :mod:`servoscope.telemetry` OpenTelemetry tracing set-up (per process, after fork)
- :mod:`servoscope.metrics`   Prometheus metrics with exemplars, ``/metrics``
- :mod:`servoscope.jsonlog`   one JSON object per log line, with trace and span ids
- :mod:`servoscope.inbound`   what happens to every inbound request (span, metrics, log, request id)
- :mod:`servoscope.outbound`  the pooled HTTP client that carries trace context downstream
- :mod:`servoscope.appfactory` a Flask app with all of the above and health endpoints
"""
