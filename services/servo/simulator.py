"""A Pololu Maestro servo controller on a pseudo-terminal, with fault modes.

Clients open the pty slave exactly as they would open ``/dev/ttyACM0`` and speak
the same bytes (compact and Pololu forms, optional CRC-7; see
:mod:`services.servo.protocol`). Servos move toward their targets under speed
and acceleration limits (:mod:`services.servo.physics`), and replies are paced
as a real line at ``--baud`` would deliver them.

Command line::

    python -m services.servo.simulator [--channels 12] [--baud 115200]
        [--device-number 12] [--crc] [--speed 0] [--acceleration 0]
        [--home-us 1500] [--min-us 992] [--max-us 2000] [--link PATH]
        [--control-port PORT] [--control-host 127.0.0.1] [--seed N]
        [--rfc2217-port PORT] [--rfc2217-host 127.0.0.1]

The first line on stdout is ``device: <pty slave path>``; then
``control: http://HOST:PORT`` when the control server is on, and
``link: PATH`` when ``--link`` is given, and ``rfc2217: rfc2217://HOST:PORT`` when
``--rfc2217-port`` also serves the same Maestro over the network (RFC 2217, as ser2net
serves a real one; see :mod:`services.servo.rfc2217_server`). SIGTERM or SIGINT
stops it (exit 0); it closes the pty and removes the link. ``--baud 0`` turns reply pacing off;
``--control-port 0`` (the default) turns the control server off.

Control interface (HTTP/JSON, 127.0.0.1 only; errors are RFC 9457
``application/problem+json``):

``GET /state``
    ``{"device", "link", "channels": [{"channel", "target_qus", "position_qus",
    "speed", "acceleration", "moving"}], "errors", "faults", "bytes_received",
    "commands_received", "commands_by_name"}``. ``device`` is null while
    unplugged; ``bytes_received`` counts every byte ever read from the serial
    line; ``commands_by_name`` counts executed commands by name
    (``{"set_target": 3, "get_position": 120}``), so a test can prove that no
    Set Target reached the device while a poller keeps reading positions.
``GET /targets/<channel>``
    ``{"channel", "targets": [qus, ...]}``: every target the channel was set to,
    oldest first (the last 10,000), so a test can prove no command was applied twice.
``GET /faults``
    ``{"faults": {mode: params}}``.
``PUT /faults/<mode>`` (optional JSON object body of parameters)
    Switch a fault on (or change its parameters); answers ``{"faults": ...}``.

    - ``unplug``: close the pty; the client's reads and writes fail. Clearing
      it "replugs": a new pty (a new /dev/pts/N) and the link repointed.
    - ``stall``: keep reading bytes but neither execute nor answer commands
      (a hung controller; motion already under way finishes).
    - ``slow``: ``{"latency_s": 0.2}`` added to every reply (0 < x <= 30).
    - ``garble``: ``{"probability": 1.0}`` that each reply byte is XORed with a
      random non-zero mask (0 < p <= 1).
    - ``error``: ``{"bits": 16, "sticky": false}`` ORed into the error register
      now (``bits`` is required, 1..65535); Get Errors clears them as usual,
      unless ``sticky``, in which case they come back after every read.
``DELETE /faults/<mode>``, ``DELETE /faults``
    Clear one fault or all of them (clearing ``unplug`` replugs).

Example::

    curl -X PUT localhost:9100/faults/slow -d '{"latency_s": 0.5}'
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import random
import select
import signal
import sys
import termios
import threading
import time
import tty
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from services.servo import protocol
from services.servo.physics import ChannelConfig, ServoBank
from services.servo.rfc2217_server import Rfc2217Server

__all__ = ["FAULT_MODES", "Simulator", "SimulatorConfig", "main", "validate_fault"]

log = logging.getLogger("maestro-simulator")

MIN_CHANNELS = 6
BITS_PER_BYTE = 10  # start bit + 8 data bits + stop bit
READ_SIZE = 4096
MAX_CONTROL_BODY = 64 * 1024
TARGET_LOG_MAX = 10_000  # per channel
FAULT_MODES = ("unplug", "stall", "slow", "garble", "error")
# Names in GET /state's commands_by_name (the servo controller's span names use them too).
COMMAND_NAMES: dict[type, str] = {
    protocol.SetTarget: "set_target",
    protocol.SetMultipleTargets: "set_multiple_targets",
    protocol.SetSpeed: "set_speed",
    protocol.SetAcceleration: "set_acceleration",
    protocol.GetPosition: "get_position",
    protocol.GetMovingState: "get_moving_state",
    protocol.GetErrors: "get_errors",
    protocol.GoHome: "go_home",
}


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything that defines one simulated Maestro (pulse widths in us)."""

    channels: int = 12
    baud: int = 115200
    device_number: int = protocol.DEFAULT_DEVICE_NUMBER
    crc: bool = False
    speed: int = 0
    acceleration: int = 0
    home_us: float = 1500.0
    min_us: float = 992.0
    max_us: float = 2000.0
    link: str | None = None
    # None: no control server; 0: an ephemeral port (see Simulator.control_url).
    control_port: int | None = None
    control_host: str = "127.0.0.1"
    seed: int | None = None
    # None: the pty only; 0: also RFC 2217 on an ephemeral port (see Simulator.rfc2217_url).
    rfc2217_port: int | None = None
    rfc2217_host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if not MIN_CHANNELS <= self.channels <= protocol.MAX_CHANNELS:
            raise ValueError(
                f"channels must be in {MIN_CHANNELS}..{protocol.MAX_CHANNELS}, got {self.channels}"
            )
        if self.baud < 0:
            raise ValueError(f"baud must be >= 0 (0 turns pacing off), got {self.baud}")
        if not 0 <= self.device_number <= 127:
            raise ValueError(f"device_number must be in 0..127, got {self.device_number}")
        if self.control_port is not None and not 0 <= self.control_port <= 65535:
            raise ValueError(f"control_port must be in 0..65535, got {self.control_port}")
        self.channel_config()  # validates speed, acceleration and pulse widths

    def channel_config(self) -> ChannelConfig:
        return ChannelConfig(
            min_qus=round(self.min_us * 4),
            max_qus=round(self.max_us * 4),
            home_qus=round(self.home_us * 4),
            speed=self.speed,
            acceleration=self.acceleration,
        )


# --- faults ------------------------------------------------------------------


def _number(mode: str, name: str, value: Any, low: float, high: float) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not low < value <= high:
        raise ValueError(
            f"{mode}: {name} must be a number with {low} < {name} <= {high}, got {value!r}"
        )
    return float(value)


def validate_fault(mode: str, params: dict[str, Any]) -> dict[str, Any]:
    """Return the complete, checked parameters of fault ``mode``.

    Raises ValueError naming the bad mode or parameter and what is allowed.

    >>> validate_fault("slow", {})
    {'latency_s': 0.2}
    >>> validate_fault("garble", {"probability": 2})
    Traceback (most recent call last):
    ...
    ValueError: garble: probability must be a number with 0 < probability <= 1, got 2
    """
    allowed: dict[str, tuple[str, ...]] = {
        "unplug": (),
        "stall": (),
        "slow": ("latency_s",),
        "garble": ("probability",),
        "error": ("bits", "sticky"),
    }
    if mode not in allowed:
        raise ValueError(f"unknown fault mode {mode!r}; use one of {', '.join(FAULT_MODES)}")
    unknown = sorted(set(params) - set(allowed[mode]))
    if unknown:
        takes = ", ".join(allowed[mode]) or "no parameters"
        raise ValueError(f"{mode}: unknown parameter {unknown[0]!r}; {mode} takes {takes}")
    if mode == "slow":
        return {"latency_s": _number(mode, "latency_s", params.get("latency_s", 0.2), 0, 30)}
    if mode == "garble":
        return {"probability": _number(mode, "probability", params.get("probability", 1.0), 0, 1)}
    if mode == "error":
        bits = params.get("bits")
        if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= 0xFFFF:
            raise ValueError(
                f"error: bits must be an integer in 1..65535 (see protocol.ErrorBits), got {bits!r}"
            )
        sticky = params.get("sticky", False)
        if not isinstance(sticky, bool):
            raise ValueError(f"error: sticky must be true or false, got {sticky!r}")
        return {"bits": bits, "sticky": sticky}
    return {}


# --- the pty -----------------------------------------------------------------


class _Pty:
    """One pty pair: we serve the master; clients open ``path`` (the slave).

    We keep our own fd on the slave so the master never sees a hang-up (EIO)
    between clients; it is also the fd we put in raw mode, so no byte is
    translated (no CR/LF mapping, no XON/XOFF, no echo, no signals).
    """

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        try:
            tty.setraw(self.slave, termios.TCSANOW)
            os.set_blocking(self.master, False)
            self.path = os.ttyname(self.slave)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


# --- the simulator -----------------------------------------------------------


@dataclass
class _Reply:
    due: float
    data: bytes


@dataclass
class _State:
    """What the lock guards: everything the IO and control threads share."""

    errors: int = 0
    faults: dict[str, dict[str, Any]] = field(default_factory=dict)
    bytes_received: int = 0
    commands_received: int = 0
    commands_by_name: dict[str, int] = field(default_factory=dict)
    # Every target each channel was set to, latest last: a command applied twice shows here.
    targets: dict[int, deque[int]] = field(default_factory=dict)
    outbox: deque[_Reply] = field(default_factory=deque)


class Simulator:
    """A simulated Maestro serving a pty, optionally with an HTTP control server.

    >>> sim = Simulator(SimulatorConfig(baud=0))
    >>> sim.start()
    >>> sim.device_path.startswith("/dev/")
    True
    >>> sim.stop()

    Use it as a context manager in tests: ``with Simulator(config) as sim: ...``.
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or SimulatorConfig()
        self._clock = clock
        self._rng = random.Random(self.config.seed)
        self._bank = ServoBank([self.config.channel_config()] * self.config.channels, clock=clock)
        self._decoder = self._new_decoder()
        self._state = _State()
        self._lock = threading.Lock()
        self._pty: _Pty | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = -1, -1
        # Port changes (unplug/replug) run on the IO thread, which owns the fds:
        # closing an fd another thread is polling could hand its number to a new pty.
        self._port_requests: deque[tuple[str, threading.Event]] = deque()
        # (stream offset, monotonic time) of each chunk fed to the decoder, to
        # know when a command's first byte arrived.
        self._arrivals: deque[tuple[int, float]] = deque()
        self._fed = 0
        self._last_due = 0.0
        self._line_in_free = 0.0
        self._control: _ControlServer | None = None
        self._rfc2217: Rfc2217Server | None = None

    def _new_decoder(self) -> protocol.CommandDecoder:
        return protocol.CommandDecoder(
            device_number=self.config.device_number,
            crc=self.config.crc,
            channels=self.config.channels,
        )

    # --- life cycle ---

    def start(self) -> None:
        """Open the pty (and link, and control server) and start serving."""
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        link = self.config.link
        if link and os.path.lexists(link) and not os.path.islink(link):
            raise ValueError(f"--link {link} exists and is not a symlink; choose another path")
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._plug()
        if self.config.control_port is not None:
            self._control = _ControlServer(self, self.config.control_host, self.config.control_port)
            self._control.start()
        self._thread = threading.Thread(target=self._serve, name="maestro-io", daemon=True)
        self._thread.start()
        if self.config.rfc2217_port is not None:
            self._rfc2217 = Rfc2217Server(
                lambda: self.device_path, self.config.rfc2217_host, self.config.rfc2217_port
            )
            self._rfc2217.start()

    def stop(self) -> None:
        """Stop serving; close the pty, remove the link, stop the control server."""
        if self._thread is None:
            return
        if self._rfc2217 is not None:
            self._rfc2217.stop()
            self._rfc2217 = None
        self._stopping.set()
        self._wake()
        self._thread.join(timeout=5)
        if self._control is not None:
            self._control.stop()
            self._control = None
        self._unplug()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._thread = None

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def device_path(self) -> str | None:
        """Path of the pty slave clients open; None while unplugged."""
        pty = self._pty
        return pty.path if pty else None

    @property
    def link_path(self) -> str | None:
        return self.config.link

    @property
    def control_url(self) -> str | None:
        """``http://host:port`` of the control server, or None if it is off."""
        return self._control.url if self._control else None

    @property
    def rfc2217_url(self) -> str | None:
        """``rfc2217://host:port`` where the device is served over the network, or None."""
        return self._rfc2217.url if self._rfc2217 else None

    # --- faults ---

    def set_fault(self, mode: str, **params: Any) -> dict[str, dict[str, Any]]:
        """Switch fault ``mode`` on; returns all active faults. ValueError if invalid."""
        checked = validate_fault(mode, params)
        with self._lock:
            self._state.faults[mode] = checked
            if mode == "error":
                self._state.errors |= checked["bits"]
            if mode == "stall":
                self._state.outbox.clear()
            faults = self._faults_copy()
        if mode == "unplug":
            self._request_port("unplug")
        return faults

    def clear_fault(self, mode: str | None = None) -> dict[str, dict[str, Any]]:
        """Clear fault ``mode`` (None: all); clearing unplug replugs. Returns the faults."""
        if mode is not None and mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; use one of {', '.join(FAULT_MODES)}")
        with self._lock:
            faults = self._state.faults
            was_unplugged = "unplug" in faults
            if mode is None:
                faults.clear()
            else:
                faults.pop(mode, None)
            replug = was_unplugged and "unplug" not in faults
        if replug:
            self._request_port("replug")
        with self._lock:
            return self._faults_copy()

    def _faults_copy(self) -> dict[str, dict[str, Any]]:
        return {mode: dict(params) for mode, params in self._state.faults.items()}

    def snapshot(self) -> dict[str, Any]:
        """The device as ``GET /state`` shows it (JSON-ready)."""
        with self._lock:
            return {
                "device": self.device_path,
                "link": self.config.link,
                "channels": [asdict(channel) for channel in self._bank.snapshot()],
                "errors": int(self._state.errors),
                "faults": self._faults_copy(),
                "bytes_received": self._state.bytes_received,
                "commands_received": self._state.commands_received,
                "commands_by_name": dict(self._state.commands_by_name),
            }

    # --- port changes ---

    def _request_port(self, action: str) -> None:
        thread = self._thread
        if thread is None or not thread.is_alive() or thread is threading.current_thread():
            self._apply_port(action)
            return
        done = threading.Event()
        self._port_requests.append((action, done))
        self._wake()
        done.wait(timeout=5)

    def _apply_port(self, action: str) -> None:
        if action == "unplug":
            self._unplug()
        elif self._pty is None and not self._stopping.is_set():
            self._plug()

    def _plug(self) -> None:
        self._pty = _Pty()
        self._decoder = self._new_decoder()
        self._arrivals.clear()
        self._fed = 0
        self._last_due = 0.0
        self._line_in_free = 0.0
        link = self.config.link
        if link:
            # Create-then-rename so a client never sees a missing or half-made link.
            tmp = f"{link}.tmp-{os.getpid()}"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            os.symlink(self._pty.path, tmp)
            os.replace(tmp, link)
        log.info("plugged in at %s", self._pty.path)

    def _unplug(self) -> None:
        pty, self._pty = self._pty, None
        if pty is None:
            return
        link = self.config.link
        if link and os.path.islink(link) and os.readlink(link) == pty.path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(link)
        pty.close()
        with self._lock:
            self._state.outbox.clear()
        log.info("unplugged %s", pty.path)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")

    # --- the IO loop ---

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                self._serve_once()
            except Exception:
                # Never let one bad moment end the device; back off briefly.
                log.exception("simulator IO loop error; continuing")
                time.sleep(0.05)

    def _serve_once(self) -> None:
        while self._port_requests:
            action, done = self._port_requests.popleft()
            try:
                self._apply_port(action)
            finally:
                done.set()
        pty = self._pty
        fds = [self._wake_r] if pty is None else [self._wake_r, pty.master]
        # select, not poll: its timeout has microsecond resolution, and replies at
        # 115200 baud are due a fraction of a millisecond apart.
        readable, _, _ = select.select(fds, [], [], self._wait_s())
        for fd in readable:
            if fd == self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 512)
            elif pty is not None and fd == pty.master:
                self._read(pty)  # a hang-up reads as EIO, handled there
        self._flush_replies()

    def _wait_s(self) -> float:
        with self._lock:
            outbox = self._state.outbox
            if not outbox:
                return 0.5
            wait = outbox[0].due - self._clock()
        return max(0.0, min(0.5, wait))

    def _read(self, pty: _Pty) -> None:
        try:
            chunk = os.read(pty.master, READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            time.sleep(0.02)  # no client has the slave open (Linux): retry later
            return
        if not chunk:
            return
        now = self._clock()
        with self._lock:
            self._state.bytes_received += len(chunk)
            if "stall" in self._state.faults:
                return
            self._arrivals.append((self._fed, now))
            self._fed += len(chunk)
            for frame in self._decoder.iter_feed(chunk):
                # Errors before this command first: a Get Errors reports them.
                self._state.errors |= self._decoder.take_errors()
                self._state.commands_received += 1
                name = COMMAND_NAMES[type(frame.command)]
                counts = self._state.commands_by_name
                counts[name] = counts.get(name, 0) + 1
                received = self._received_at(frame)
                reply = self._execute(frame.command)
                if reply:
                    self._schedule(reply, received)
            self._state.errors |= self._decoder.take_errors()
            self._forget_arrivals()

    def _forget_arrivals(self) -> None:
        start_of_pending = self._fed - self._decoder.pending
        while len(self._arrivals) > 1 and self._arrivals[1][0] <= start_of_pending:
            self._arrivals.popleft()

    def _arrival_time(self, offset: int) -> float:
        when = self._arrivals[0][1] if self._arrivals else self._clock()
        for start, at in self._arrivals:
            if start > offset:
                break
            when = at
        return when

    def _execute(self, command: protocol.MaestroCommand) -> bytes:
        """Apply one command to the device; return its reply bytes (maybe none)."""
        bank = self._bank
        match command:
            case protocol.SetTarget(channel=channel, target=target):
                bank.set_target(channel, target)
                self._log_target(channel, target)
            case protocol.SetMultipleTargets(first_channel=first, targets=targets):
                for index, target in enumerate(targets):
                    bank.set_target(first + index, target)
                    self._log_target(first + index, target)
            case protocol.SetSpeed(channel=channel, speed=speed):
                bank.set_speed(channel, speed)
            case protocol.SetAcceleration(channel=channel, acceleration=acceleration):
                bank.set_acceleration(channel, acceleration)
            case protocol.GoHome():
                bank.go_home()
            case protocol.GetPosition(channel=channel):
                return protocol.encode_position_reply(bank.position(channel))
            case protocol.GetMovingState():
                return protocol.encode_moving_reply(bank.moving())
            case protocol.GetErrors():
                reply = protocol.encode_errors_reply(self._state.errors)
                sticky = self._state.faults.get("error", {})
                self._state.errors = sticky.get("bits", 0) if sticky.get("sticky") else 0
                return reply
        return b""

    def _log_target(self, channel: int, target: int) -> None:
        log = self._state.targets.setdefault(channel, deque(maxlen=TARGET_LOG_MAX))
        log.append(target)

    def targets(self, channel: int) -> list[int]:
        """The targets ``channel`` was set to (quarter-microseconds), oldest first."""
        with self._lock:
            return list(self._state.targets.get(channel, ()))

    def _wire_s(self, length: int) -> float:
        """How long a real line at the configured baud takes to carry ``length`` bytes."""
        return length * BITS_PER_BYTE / self.config.baud if self.config.baud else 0.0

    def _received_at(self, frame: protocol.Frame) -> float:
        """When the command's last byte would have arrived: the line carries one byte
        at a time, so commands written together arrive one after another."""
        start = max(self._arrival_time(frame.offset), self._line_in_free)
        self._line_in_free = start + self._wire_s(frame.length)
        return self._line_in_free

    def _schedule(self, reply: bytes, received: float) -> None:
        faults = self._state.faults
        due = received
        if "slow" in faults:
            due += faults["slow"]["latency_s"]
        if "garble" in faults:
            probability = faults["garble"]["probability"]
            reply = bytes(
                byte ^ self._rng.randint(1, 255) if self._rng.random() < probability else byte
                for byte in reply
            )
        # The reply line is serial too: a reply goes out after the one before it.
        due = max(due, self._last_due) + self._wire_s(len(reply))
        self._last_due = due
        self._state.outbox.append(_Reply(due, reply))

    def _flush_replies(self) -> None:
        pty = self._pty
        with self._lock:
            outbox = self._state.outbox
            now = self._clock()
            while outbox and outbox[0].due <= now:
                reply = outbox.popleft()
                if pty is None or "stall" in self._state.faults:
                    continue
                try:
                    os.write(pty.master, reply.data)
                except BlockingIOError:
                    # Nobody reads the slave and its buffer is full: a real
                    # device's bytes would be lost too.
                    log.warning("reply dropped: client is not reading")
                except OSError as exc:
                    log.warning("reply dropped: %s", exc)


# --- control server ----------------------------------------------------------


class _ControlServer:
    """The HTTP/JSON control interface, on a daemon thread."""

    def __init__(self, simulator: Simulator, host: str, port: int) -> None:
        handler = type("Handler", (_ControlHandler,), {"simulator": simulator})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="maestro-control", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _ControlHandler(BaseHTTPRequestHandler):
    simulator: Simulator
    server_version = "maestro-simulator"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("control: " + format, *args)

    def _send_json(self, status: int, body: dict[str, Any], content_type: str) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _ok(self, body: dict[str, Any]) -> None:
        self._send_json(200, body, "application/json")

    def _problem(self, status: HTTPStatus, slug: str, detail: str) -> None:
        self._send_json(
            status,
            {
                "type": f"urn:servoscope:problem:{slug}",
                "title": status.phrase,
                "status": int(status),
                "detail": detail,
                "instance": self.path,
            },
            "application/problem+json",
        )

    def _route(self) -> tuple[str, str | None]:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/state":
            return "state", None
        if path == "/faults":
            return "faults", None
        if path.startswith("/targets/") and path.count("/") == 2:
            return "targets", path.removeprefix("/targets/")
        if path.startswith("/faults/") and path.count("/") == 2:
            return "fault", path.removeprefix("/faults/")
        return "unknown", None

    def _not_allowed(self, allowed: str) -> None:
        self._problem(
            HTTPStatus.METHOD_NOT_ALLOWED,
            "method-not-allowed",
            f"{self.command} is not supported on {self.path}; use {allowed}",
        )

    def _not_found(self) -> None:
        self._problem(
            HTTPStatus.NOT_FOUND,
            "not-found",
            f"no such resource {self.path}; "
            "use /state, /targets/<channel>, /faults or /faults/<mode>",
        )

    def _read_params(self) -> dict[str, Any] | None:
        """The JSON object body, {} if none; None after answering 4xx."""
        length_header = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._problem(
                HTTPStatus.BAD_REQUEST, "bad-body", "send the body with a Content-Length header"
            )
            return None
        if not length_header:
            return {}
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_CONTROL_BODY:
            self.close_connection = True
            self._problem(
                HTTPStatus.BAD_REQUEST if length < 0 else HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                "bad-body",
                f"Content-Length must be an integer in 0..{MAX_CONTROL_BODY}, "
                f"got {length_header!r}",
            )
            return None
        raw = self.rfile.read(length)
        if not raw.strip():
            return {}
        try:
            params = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._problem(HTTPStatus.BAD_REQUEST, "bad-body", f"body is not valid JSON: {exc}")
            return None
        if not isinstance(params, dict):
            self._problem(
                HTTPStatus.BAD_REQUEST,
                "bad-body",
                'body must be a JSON object of parameters, e.g. {"latency_s": 0.2}',
            )
            return None
        return params

    def do_GET(self) -> None:
        route, name = self._route()
        if route == "state":
            self._ok(self.simulator.snapshot())
        elif route == "targets" and name is not None and name.isdigit():
            channel = int(name)
            self._ok({"channel": channel, "targets": self.simulator.targets(channel)})
        elif route == "faults":
            self._ok({"faults": self.simulator.snapshot()["faults"]})
        elif route == "fault":
            self._not_allowed("PUT or DELETE")
        else:
            self._not_found()

    def do_PUT(self) -> None:
        route, mode = self._route()
        if route != "fault" or mode is None:
            if route == "unknown":
                self._not_found()
            else:
                self._not_allowed("GET" if route == "state" else "GET or DELETE")
            return
        params = self._read_params()
        if params is None:
            return
        try:
            faults = self.simulator.set_fault(mode, **params)
        except ValueError as exc:
            self._problem(HTTPStatus.BAD_REQUEST, "bad-fault", str(exc))
            return
        self._ok({"faults": faults})

    def do_DELETE(self) -> None:
        route, mode = self._route()
        if route == "state":
            self._not_allowed("GET")
            return
        if route == "unknown":
            self._not_found()
            return
        try:
            faults = self.simulator.clear_fault(mode)
        except ValueError as exc:
            self._problem(HTTPStatus.BAD_REQUEST, "bad-fault", str(exc))
            return
        self._ok({"faults": faults})

    def do_POST(self) -> None:
        route, _ = self._route()
        if route == "unknown":
            self._not_found()
        else:
            self._not_allowed(
                {"state": "GET", "faults": "GET or DELETE"}.get(route, "PUT or DELETE")
            )

    do_PATCH = do_POST


# --- command line ------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.servo.simulator",
        description="A Pololu Maestro servo controller simulated on a pseudo-terminal "
        "(and, with --rfc2217-port, served over the network).",
    )
    add = parser.add_argument
    add("--channels", type=int, default=12, help="number of channels, 6..24 (default 12)")
    add("--baud", type=int, default=115200, help="pace replies as this baud rate; 0 = no pacing")
    add("--device-number", type=int, default=12, help="Pololu-form device number (default 12)")
    add("--crc", action="store_true", help="require a CRC-7 byte after every command")
    add("--speed", type=int, default=0, help="start-up speed of every channel (0 = unlimited)")
    add("--acceleration", type=int, default=0, help="start-up acceleration, 0..255 (0 = none)")
    add("--home-us", type=float, default=1500.0, help="home and start position in us; 0 = off")
    add("--min-us", type=float, default=992.0, help="targets below this clamp to it (us)")
    add("--max-us", type=float, default=2000.0, help="targets above this clamp to it (us)")
    add("--link", help="keep a symlink at this path pointing to the current pty")
    add("--control-port", type=int, default=0, help="HTTP control port; 0 = off (default)")
    add("--control-host", default="127.0.0.1", help="HTTP control address (default 127.0.0.1)")
    add("--seed", type=int, help="random seed for the garble fault")
    add("--rfc2217-port", type=int, help="also serve the device over RFC 2217 on this TCP port")
    add("--rfc2217-host", default="127.0.0.1", help="RFC 2217 address (default 127.0.0.1)")
    add("--log-level", default="WARNING", help="stderr log level (default WARNING)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator until SIGTERM or SIGINT; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    try:
        config = SimulatorConfig(
            channels=args.channels,
            baud=args.baud,
            device_number=args.device_number,
            crc=args.crc,
            speed=args.speed,
            acceleration=args.acceleration,
            home_us=args.home_us,
            min_us=args.min_us,
            max_us=args.max_us,
            link=args.link,
            control_port=args.control_port or None,
            control_host=args.control_host,
            seed=args.seed,
            rfc2217_port=args.rfc2217_port,
            rfc2217_host=args.rfc2217_host,
        )
    except ValueError as exc:
        parser.error(str(exc))

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    simulator = Simulator(config)
    try:
        simulator.start()
    except (OSError, ValueError) as exc:
        print(f"cannot start the simulator: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"device: {simulator.device_path}", flush=True)
        if simulator.control_url:
            print(f"control: {simulator.control_url}", flush=True)
        if config.link:
            print(f"link: {config.link}", flush=True)
        if simulator.rfc2217_url:
            print(f"rfc2217: {simulator.rfc2217_url}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
