"""The one seam between the servo controller and the wire: bytes out, bytes in, a deadline.

:class:`SerialLink` is that seam; :class:`PySerialLink` satisfies it with pyserial
on a real Maestro (``/dev/ttyACM0``), the simulator's pty, or any pyserial URL: a
Maestro on another host behind ser2net (``rfc2217://host:port``, ``socket://host:port``)
or the simulator served the same way; any test double can satisfy it too. Above it,
:mod:`services.servo.protocol` does no I/O at all, and :mod:`services.servo.lifecycle`
decides what a failure means for the device.
"""

from __future__ import annotations

import contextlib
import termios
import threading
from typing import Protocol

import serial
import serial.rfc2217

# What a port that went away raises: pyserial's errors, OSError from reads and
# writes, termios.error from tcflush/tcsetattr (EIO once a pty's master is gone).
PORT_ERRORS = (serial.SerialException, OSError, termios.error)


LINE_QUEUE_EXCHANGES = 2


def _has_write_timeout(port: serial.SerialBase) -> bool:
    """pyserial's RFC 2217 client refuses write timeouts; its writes go to a TCP socket."""
    return not isinstance(port, serial.rfc2217.Serial)


def _drop_input(port: serial.SerialBase) -> None:
    """Discard received bytes nobody asked for.

    Over RFC 2217, ``reset_input_buffer`` also purges the remote port and waits for its
    acknowledgement (a round trip plus pyserial's 50 ms polling) on every exchange;
    dropping what has arrived here is what the exchange needs.
    """
    if isinstance(port, serial.rfc2217.Serial):
        while port.in_waiting:
            port.read(port.in_waiting)
    else:
        port.reset_input_buffer()


class DeviceUnavailable(Exception):
    """The serial device is not open or went away (unplugged)."""


class DeviceTimeout(Exception):
    """The device did not answer in time."""


class LineBusy(DeviceTimeout):
    """Another exchange held the line for the whole deadline (not the device's fault)."""


class GarbledReply(Exception):
    """The device answered with bytes that are no valid reply (line noise, wrong baud)."""


class SerialLink(Protocol):
    def open(self) -> None:
        """Open the port (idempotent); DeviceUnavailable if it cannot be opened."""
        ...

    def close(self) -> None: ...

    def exchange(self, request: bytes, reply_length: int, timeout: float) -> bytes:
        """Write ``request``; read exactly ``reply_length`` bytes within ``timeout`` seconds."""
        ...


class PySerialLink:
    """A pyserial port owned exclusively; one request/response exchange at a time.

    ``path`` is a device path or a pyserial URL (``rfc2217://``, ``socket://``). The
    port is opened by path every time, so a symlink that is repointed (the
    simulator's ``--link`` after a replug, a udev ``/dev/serial/by-id`` name) is
    followed to the new device on reconnect.
    """

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
            port = serial.serial_for_url(
                self.path, baudrate=self.baud, timeout=0, exclusive=True, do_not_open=True
            )
            if _has_write_timeout(port):
                port.write_timeout = 1.0
            port.open()
            self._port = port
            port.reset_input_buffer()  # bytes from before we owned the port are stale
        except PORT_ERRORS as exc:
            self._close_locked()
            raise DeviceUnavailable(f"cannot open {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._port is not None:
            with contextlib.suppress(*PORT_ERRORS):
                self._port.close()
        self._port = None

    def exchange(self, request: bytes, reply_length: int, timeout: float) -> bytes:
        # Queue for the line at most as long as two exchanges ahead may hold it at
        # their full deadline; then this exchange gets its own full deadline.
        queue_s = LINE_QUEUE_EXCHANGES * timeout
        if not self._lock.acquire(timeout=queue_s):
            raise LineBusy(f"{self.path}: the line stayed busy for {queue_s:g}s")
        try:
            port = self._port
            if port is None or not port.is_open:
                raise DeviceUnavailable(f"{self.path} is not open")
            try:
                _drop_input(port)  # a late reply to a timed-out read must not leak here
                # pyserial reconfigures the tty on every timeout assignment: only on change.
                if port.write_timeout != timeout and _has_write_timeout(port):
                    port.write_timeout = timeout
                if port.timeout != timeout:
                    port.timeout = timeout
                port.write(request)
                if reply_length == 0:
                    port.flush()
                    return b""
                reply = port.read(reply_length)
            except serial.SerialTimeoutException as exc:
                raise DeviceTimeout(f"{self.path}: write did not finish in {timeout}s") from exc
            except PORT_ERRORS as exc:
                self._close_locked()
                raise DeviceUnavailable(f"{self.path}: {exc}") from exc
            if len(reply) < reply_length:
                raise DeviceTimeout(
                    f"{self.path}: got {len(reply)} of {reply_length} reply bytes in {timeout}s"
                )
            return reply
        finally:
            self._lock.release()
