"""Resilience primitives shared by the gateway and the services that call other services.

- :mod:`servoscope.resilience.sharedstate` Redis when it is up, this process otherwise
- :mod:`servoscope.resilience.breaker` circuit breakers on pybreaker's state machine,
  never locked over the guarded I/O

Each user passes in its own metric families, so the gateway's breakers export
``gateway_breaker_*`` and device-state's export ``device_state_breaker_*``.
"""
