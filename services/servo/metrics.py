"""The servo controller's Prometheus metrics (names are a contract: dashboards use them)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from servoscope.metrics import observe

# A Maestro exchange takes ~0.3 ms of wire time at 115200 baud, and the stack's
# timeout is 250 ms: the buckets span both ends.
EXCHANGE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

EXCHANGE_DURATION = Histogram(
    "servo_serial_exchange_duration_seconds",
    "One request/response exchange on the serial line, by command.",
    ["command"],
    buckets=EXCHANGE_BUCKETS,
)
ERROR_KINDS = ("timeout", "unavailable", "garbled", "device_error", "busy")
SERIAL_ERRORS = Counter(
    "servo_serial_errors_total",
    "Failed exchanges and device-reported errors, by kind "
    "(timeout, unavailable, garbled, device_error, busy).",
    ["kind"],
)
for _kind in ERROR_KINDS:
    SERIAL_ERRORS.labels(_kind)  # a series at 0 from the start, so rate() sees the first error
DEVICE_CONNECTED = Gauge(
    "servo_device_connected", "1 while the device is active (connected and initialised), else 0."
)
TARGET_ANGLE = Gauge(
    "servo_target_angle_degrees", "The last accepted target angle, by channel.", ["channel"]
)
ACTUAL_ANGLE = Gauge(
    "servo_actual_angle_degrees", "The angle last read from the device, by channel.", ["channel"]
)


def observe_exchange(command: str, seconds: float) -> None:
    """Record one exchange, with the current trace id as exemplar when there is one."""
    observe(EXCHANGE_DURATION, seconds, command)
