"""The simulated Maestro: its configuration, the commands it executes, and the IO
thread that serves them on a pty, paced like a real serial line (:mod:`.line`), with
servo physics (:mod:`services.servo.physics`) and runtime faults (:mod:`.faults`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import random
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from services.servo import protocol
from services.servo.physics import ChannelConfig, ServoBank
from services.servo.rfc2217_server import Rfc2217Server
from services.servo.simulator.control import ControlServer
from services.servo.simulator.faults import FAULT_MODES, garble, validate_fault
from services.servo.simulator.line import Pty, SerialLine

log = logging.getLogger("maestro-simulator")

MIN_CHANNELS = 6
READ_SIZE = 4096
TARGET_LOG_MAX = 10_000  # per channel
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
        self._pty: Pty | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = -1, -1
        # Port changes (unplug/replug) run on the IO thread, which owns the fds:
        # closing an fd another thread is polling could hand its number to a new pty.
        self._port_requests: deque[tuple[str, threading.Event]] = deque()
        self._line = SerialLine(self.config.baud, clock)
        self._control: ControlServer | None = None
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
            self._control = ControlServer(self, self.config.control_host, self.config.control_port)
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
        self._pty = Pty()
        self._decoder = self._new_decoder()
        self._line.reset()
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

    def _read(self, pty: Pty) -> None:
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
            self._line.arrived(len(chunk), now)
            for frame in self._decoder.iter_feed(chunk):
                # Errors before this command first: a Get Errors reports them.
                self._state.errors |= self._decoder.take_errors()
                self._state.commands_received += 1
                name = COMMAND_NAMES[type(frame.command)]
                counts = self._state.commands_by_name
                counts[name] = counts.get(name, 0) + 1
                received = self._line.received_at(frame.offset, frame.length)
                reply = self._execute(frame.command)
                if reply:
                    self._schedule(reply, received)
            self._state.errors |= self._decoder.take_errors()
            self._line.forget(self._decoder.pending)

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

    def _schedule(self, reply: bytes, received: float) -> None:
        faults = self._state.faults
        ready = received
        if "slow" in faults:
            ready += faults["slow"]["latency_s"]
        if "garble" in faults:
            reply = garble(reply, faults["garble"]["probability"], self._rng)
        self._state.outbox.append(_Reply(self._line.reply_due(ready, len(reply)), reply))

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
