"""The one seam between the servo controller and the wire: bytes out, bytes in, a deadline.

:class:`SerialLink` is that seam; :class:`PySerialLink` satisfies it with pyserial
on a real Maestro (``/dev/ttyACM0``) or the simulator's pty, and any test double can
satisfy it too. Above it, :mod:`services.servo.protocol` does no I/O at all.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Protocol

import serial


class DeviceUnavailable(Exception):
    """The serial device is not open or went away (unplugged)."""


class DeviceTimeout(Exception):
    """The device did not answer in time."""


class SerialLink(Protocol):
    def exchange(self, request: bytes, reply_length: int, timeout: float) -> bytes:
        """Write ``request``; read exactly ``reply_length`` bytes within ``timeout`` seconds."""
        ...


class PySerialLink:
    """A pyserial port owned exclusively; one request/response exchange at a time."""

    def __init__(self, path: str, baud: int = 115200) -> None:
        self.path = path
        self.baud = baud
        self._port: serial.Serial | None = None
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._port is not None and self._port.is_open

    def open(self) -> None:
        with self._lock:
            self._open_locked()

    def _open_locked(self) -> None:
        if self._port is not None and self._port.is_open:
            return
        try:
            self._port = serial.Serial(
                self.path, baudrate=self.baud, timeout=0, write_timeout=1.0, exclusive=True
            )
        except (serial.SerialException, OSError) as exc:
            self._port = None
            raise DeviceUnavailable(f"cannot open {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._port is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                self._port.close()
        self._port = None

    def exchange(self, request: bytes, reply_length: int, timeout: float) -> bytes:
        with self._lock:
            self._open_locked()
            port = self._port
            assert port is not None
            try:
                port.reset_input_buffer()  # a late reply to a timed-out read must not leak here
                port.write_timeout = timeout
                port.write(request)
                if reply_length == 0:
                    port.flush()
                    return b""
                port.timeout = timeout
                reply = port.read(reply_length)
            except (serial.SerialException, OSError) as exc:
                self._close_locked()
                raise DeviceUnavailable(f"{self.path}: {exc}") from exc
            if len(reply) < reply_length:
                raise DeviceTimeout(
                    f"{self.path}: got {len(reply)} of {reply_length} reply bytes in {timeout}s"
                )
            return reply
