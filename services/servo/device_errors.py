"""The Maestro's error register as the service reports it.

Get Errors clears the register on the device, so the service keeps what it read:
the last reading, the last non-zero one and a count per bit since start. The
poller reads it on every cycle and each command confirms itself with a read.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace

from services.servo import metrics
from services.servo.protocol import ErrorBits

# Bits that say a command on the line may have been lost (not script errors).
LINE_ERRORS = (
    ErrorBits.SERIAL_SIGNAL_ERROR
    | ErrorBits.SERIAL_OVERRUN_ERROR
    | ErrorBits.SERIAL_RX_BUFFER_FULL
    | ErrorBits.SERIAL_CRC_ERROR
    | ErrorBits.SERIAL_PROTOCOL_ERROR
)
KNOWN_BITS = sum(int(bit) for bit in ErrorBits)


def bit_names(bits: int) -> list[str]:
    """``["SERIAL_CRC_ERROR", ...]`` for the set bits, in bit order."""
    return [bit.name or "" for bit in ErrorBits if bits & bit]


class DeviceReportedErrors(Exception):
    """The device's error register says a command may not have been applied."""

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.names = bit_names(bits)
        super().__init__(
            f"the device reported {', '.join(self.names)} right after the command, so it may "
            "not have been applied; sending it again is safe (targets are absolute)"
        )


@dataclass(frozen=True)
class ErrorReading:
    bits: int
    read_at: float  # wall-clock seconds


class DeviceErrorLog:
    """What the service has read from the error register; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.last: ErrorReading | None = None
        self.last_nonzero: ErrorReading | None = None
        self.counts: dict[str, int] = {}

    def record(self, bits: int) -> None:
        reading = ErrorReading(bits, time.time())
        span = trace.get_current_span()
        span.set_attribute("servo.error_bits", bits)
        if bits:
            span.set_attribute("servo.errors", bit_names(bits))
            metrics.SERIAL_ERRORS.labels("device_error").inc()
        with self._lock:
            self.last = reading
            if bits:
                self.last_nonzero = reading
                for name in bit_names(bits):
                    self.counts[name] = self.counts.get(name, 0) + 1

    def as_json(self) -> dict[str, Any]:
        with self._lock:
            last, nonzero, counts = self.last, self.last_nonzero, dict(self.counts)
        return {
            "last_read": bit_names(last.bits) if last else None,
            "last_read_at": iso_time(last.read_at) if last else None,
            "last_reported": bit_names(nonzero.bits) if nonzero else [],
            "last_reported_at": iso_time(nonzero.read_at) if nonzero else None,
            "counts": counts,
        }


def iso_time(seconds: float) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-01-02T03:04:05.678Z``."""
    millis = int(seconds % 1 * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"
