"""The resilience core the gateway, the motion planner and device-state all build on.

- :mod:`servoscope.resilience.pipeline` a pipeline: an ordered list of stages, each
  ``stage(call, rest) -> Reply``, and the core's order
- :mod:`servoscope.resilience.deadline`, :mod:`~servoscope.resilience.bulkhead`,
  :mod:`~servoscope.resilience.retry` (with :mod:`~servoscope.resilience.budget`),
  :mod:`~servoscope.resilience.attempt` (breaker, attempt timeout, transport): the stages
- :mod:`servoscope.resilience.options` their typed options
- :mod:`servoscope.resilience.breaker` circuit breakers on pybreaker's state machine,
  never locked over the guarded I/O
- :mod:`servoscope.resilience.blame` whose fault an outcome is
- :mod:`servoscope.resilience.clock` the one clock the stages read
- :mod:`servoscope.resilience.sharedstate` Redis when it is up, this process otherwise

Each user passes in its own options and metric families, so the gateway's breakers export
``gateway_breaker_*``, the motion planner's ``motion_breaker_*`` and device-state's
``device_state_breaker_*``.
"""
