"""A serial port served over the network with RFC 2217, as ser2net serves a real Maestro.

The simulator's Maestro lives on a pty; :class:`Rfc2217Server` opens that pty like any
client would and relays its bytes to one TCP client at a time, with pyserial's own
:class:`serial.rfc2217.PortManager` speaking the protocol (telnet options, baud rate,
purges). So the bytes on the wire are the Maestro's bytes, and a servo controller in
another container or pod opens ``rfc2217://host:port`` exactly as it opens
``/dev/ttyACM0``::

    python -m services.servo.simulator --rfc2217-port 2217 --rfc2217-host 0.0.0.0
    SERVO_PORT=rfc2217://simulator:2217 ...

Unplugging the simulated device (its ``unplug`` fault) closes the pty: the relay ends
and the TCP connection closes, which the client sees as a port that went away; a
client that reconnects after the replug is served the new pty.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import threading
from collections.abc import Callable

import serial
import serial.rfc2217

log = logging.getLogger("maestro-simulator.rfc2217")

ACCEPT_POLL_S = 0.2
RECV_SIZE = 4096


def _kept(line: str) -> property:
    """A modem-line setting that is kept as asked and never sent to the pty."""
    return property(
        lambda port: port.lines[line],
        lambda port, value: port.lines.__setitem__(line, bool(value)),
    )


class _PtyPort(serial.Serial):
    """A pty opened with pyserial, minus the modem lines a pty does not have.

    RFC 2217 clients set DTR/RTS/break and ask for CTS/DSR/RI/CD; a pty answers those
    ioctls with ENOTTY. A USB Maestro's virtual COM port has no real modem lines either:
    report a connected line, and keep the settings a client sends without applying them
    (pyserial's ``dtr``, ``rts`` and ``break_condition`` properties, overridden).
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.lines = {"dtr": True, "rts": True, "break": False}  # what clients asked for
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    dtr = _kept("dtr")
    rts = _kept("rts")
    break_condition = _kept("break")

    @property
    def cts(self) -> bool:
        return True

    @property
    def dsr(self) -> bool:
        return True

    @property
    def ri(self) -> bool:
        return False

    @property
    def cd(self) -> bool:
        return True


class _Connection:
    """What PortManager writes to: the TCP socket, one writer at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            self.sock.sendall(data)


class Rfc2217Server:
    """Serve the serial device at ``device_path()`` over RFC 2217, one client at a time.

    ``device_path`` is asked on every new connection (None: the device is unplugged, and
    the connection is closed at once). A second client waits until the first leaves, as
    with a serial port opened exclusively.
    """

    def __init__(self, device_path: Callable[[], str | None], host: str, port: int) -> None:
        self._device_path = device_path
        self._listener = socket.create_server((host, port))
        self._listener.settimeout(ACCEPT_POLL_S)
        self._stopping = threading.Event()
        self._active: socket.socket | None = None
        self._thread = threading.Thread(target=self._accept, name="maestro-rfc2217", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"rfc2217://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        active = self._active
        if active is not None:
            with contextlib.suppress(OSError):
                active.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                self._serve(sock, peer)
            except Exception:
                log.exception("rfc2217 client %s: relay failed", peer)
            finally:
                self._active = None
                with contextlib.suppress(OSError):
                    sock.close()

    def _serve(self, sock: socket.socket, peer: tuple) -> None:
        path = self._device_path()
        if path is None:
            log.info("rfc2217 client %s refused: the device is unplugged", peer)
            return
        try:
            port = _PtyPort(path, baudrate=115200, timeout=ACCEPT_POLL_S)
        except serial.SerialException as exc:
            log.warning("rfc2217 client %s refused: cannot open %s: %s", peer, path, exc)
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._active = sock
        connection = _Connection(sock)
        manager = serial.rfc2217.PortManager(port, connection)
        done = threading.Event()
        reader = threading.Thread(
            target=self._device_to_client,
            args=(port, manager, connection, done),
            name="maestro-rfc2217-reader",
            daemon=True,
        )
        reader.start()
        log.info("rfc2217 client %s on %s", peer, path)
        try:
            while not done.is_set():
                data = sock.recv(RECV_SIZE)
                if not data:
                    break
                port.write(b"".join(manager.filter(data)))
        except (OSError, serial.SerialException) as exc:
            if getattr(exc, "errno", None) not in (errno.ECONNRESET, errno.EBADF, None):
                log.info("rfc2217 client %s: %s", peer, exc)
        finally:
            done.set()
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            reader.join(timeout=5)
            with contextlib.suppress(OSError, serial.SerialException):
                port.close()
        log.info("rfc2217 client %s left", peer)

    @staticmethod
    def _device_to_client(
        port: serial.Serial,
        manager: serial.rfc2217.PortManager,
        connection: _Connection,
        done: threading.Event,
    ) -> None:
        try:
            while not done.is_set():
                data = port.read(port.in_waiting or 1)
                if data:
                    connection.write(b"".join(manager.escape(data)))
        except (OSError, serial.SerialException):
            pass  # the device went away (unplug) or the client did
        finally:
            done.set()
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)
