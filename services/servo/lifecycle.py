"""The device's life cycle, like ros2_control's hardware components: one background
thread connects, polls, and reconnects; request threads exchange through it.

States::

    disconnected ──► connecting ──► active ──► faulted ──► connecting ──► ...
         ▲               │                                      │
         └──── (never connected yet: back to disconnected) ◄────┘

* **connecting**: open the port (exclusively; stale input dropped), apply every
  channel's speed and acceleration limits, read the error register, and poll once (a
  garbling device can pass the 2-byte error read by chance, hardly a whole poll).
* **active**: the only state in which commands reach the wire; the poller reads
  positions, motion and errors every ``poll_period_s`` into a :class:`Snapshot`.
* **faulted**: the port failed (``SerialException``: unplugged) or the device
  failed ``fault_after_failures`` exchanges in a row (hung: timed out; or
  garbling: replies that fail their checks). The thread closes the
  port and reconnects with exponential backoff (``reconnect_min_s`` up to
  ``reconnect_max_s``), reopening the configured path, so a repointed symlink or a
  replugged ``/dev/ttyACM0`` is found again. The process never exits for this.

Every exchange is measured (``servo_serial_exchange_duration_seconds{command}``)
and, when ``traced``, is one ``serial <command>`` span carrying the command,
channel, bytes out/in, the device latency and the error bits read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from services.servo import metrics, protocol
from services.servo.config import ServoConfig
from services.servo.device import (
    DeviceTimeout,
    DeviceUnavailable,
    GarbledReply,
    LineBusy,
    SerialLink,
)
from services.servo.device_errors import KNOWN_BITS, DeviceErrorLog, iso_time
from services.servo.snapshot import Snapshot, Target

log = logging.getLogger("servo.device")
tracer = trace.get_tracer("services.servo.lifecycle")

T = TypeVar("T")

# One device thread per serial path in a process: two would fight over the port.
_running: dict[str, ServoDevice] = {}
_running_lock = threading.Lock()


class DeviceState(enum.StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    ACTIVE = "active"
    FAULTED = "faulted"


class ServoDevice:
    """A Maestro behind a :class:`~services.servo.device.SerialLink`, kept connected."""

    def __init__(self, config: ServoConfig, link: SerialLink) -> None:
        self.config = config
        self.link = link
        self.errors = DeviceErrorLog()
        self._state = DeviceState.DISCONNECTED
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures_in_a_row = 0
        self._snapshot: Snapshot | None = None
        self._targets: dict[int, Target] = {}
        self.last_failure: str | None = None
        self.connected_since: float | None = None
        self.connects = 0
        # Called as (event, reason) on connected, recovered, faulted, disconnected.
        self.listeners: list[Callable[[str, str | None], None]] = []

    # --- life cycle ---

    @property
    def state(self) -> DeviceState:
        return self._state

    @property
    def active(self) -> bool:
        return self._state is DeviceState.ACTIVE

    def start(self) -> None:
        """Start the device thread (connect, poll, reconnect); at most one per path."""
        with _running_lock:
            other = _running.get(self.config.device)
            if other is not None and other is not self:
                raise RuntimeError(
                    f"{self.config.device} is already driven by this process; "
                    "run one servo controller per serial port"
                )
            _running[self.config.device] = self
        self._thread = threading.Thread(target=self._run, name="servo-device", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.link.close()
        self._set_state(DeviceState.DISCONNECTED)
        with _running_lock:
            if _running.get(self.config.device) is self:
                del _running[self.config.device]

    def _set_state(self, state: DeviceState, reason: str | None = None) -> None:
        with self._lock:
            previous, self._state = self._state, state
            if reason:
                self.last_failure = reason
            if state is DeviceState.ACTIVE:
                self.connected_since = time.time()
                self.connects += 1
                self._failures_in_a_row = 0
            elif previous is DeviceState.ACTIVE:
                self.connected_since = None
                self._targets.clear()  # a power-cycled Maestro forgets them
            connects = self.connects
        metrics.DEVICE_CONNECTED.set(1 if state is DeviceState.ACTIVE else 0)
        # Log arrivals and losses; a retry loop against an unplugged port stays quiet.
        if previous is not state and DeviceState.ACTIVE in (previous, state):
            suffix = f": {reason}" if reason else ""
            log.warning("device %s: %s -> %s%s", self.config.device, previous, state, suffix)
            if state is DeviceState.ACTIVE:
                event = "connected" if connects == 1 else "recovered"
            else:
                event = "faulted" if state is DeviceState.FAULTED else "disconnected"
            for listener in self.listeners:
                listener(event, reason)

    def _fault(self, reason: str) -> None:
        if self._state in (DeviceState.ACTIVE, DeviceState.CONNECTING):
            self._set_state(DeviceState.FAULTED, reason)
            self._wake.set()

    def _run(self) -> None:
        backoff = self.config.reconnect_min_s
        next_poll = time.monotonic()
        while not self._stop.is_set():
            try:
                if not self.active:
                    if self.connect():
                        backoff = self.config.reconnect_min_s
                        next_poll = time.monotonic()
                        continue
                    self._sleep(backoff)
                    backoff = min(backoff * 2, self.config.reconnect_max_s)
                    continue
                with contextlib.suppress(DeviceUnavailable, DeviceTimeout, GarbledReply):
                    self.poll_once()  # failures are counted and acted on in exchange()
                now = time.monotonic()
                next_poll = max(next_poll + self.config.poll_period_s, now)
                self._sleep(next_poll - now)
            except Exception:
                # The thread must outlive any surprise, or the service would stop
                # reconnecting while still answering HTTP.
                log.exception("servo device thread error; continuing")
                self._sleep(self.config.reconnect_max_s)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0 and self._wake.wait(seconds):
            self._wake.clear()

    def connect(self) -> bool:
        """One connection attempt: open, apply the limits, read the errors, poll once;
        True if active.

        The device thread calls it with backoff; a tool that drives the device without
        the thread (a benchmark) may call it once instead of :meth:`start`.
        """
        was = self._state
        self._set_state(DeviceState.CONNECTING)
        try:
            self.link.close()  # a fresh open follows a repointed path
            self.link.open()
            self._initialise()
            # A garbling device passes the 2-byte error read by chance now and then; a
            # whole poll that decodes is the proof it answers before commands go out.
            self.poll_once(require_active=False)
        except (DeviceUnavailable, DeviceTimeout, GarbledReply) as exc:
            self.link.close()
            self._set_state(was, f"connecting to {self.config.device} failed: {exc}")
            return False
        self._set_state(DeviceState.ACTIVE)
        return True

    def _initialise(self) -> None:
        """Apply every channel's limits, then read (and so clear) the error register."""
        request = bytearray()
        for channel in range(self.config.channel_count):
            settings = self.config.channel(channel)
            request += self.config.encode(protocol.SetSpeed(channel, settings.speed))
            request += self.config.encode(protocol.SetAcceleration(channel, settings.acceleration))
        request += self.config.encode(protocol.GetErrors())
        self.exchange("initialise", bytes(request), 2, self.read_errors, require_active=False)

    # --- exchanges ---

    def exchange(
        self,
        command: str,
        request: bytes,
        reply_length: int,
        decode: Callable[[bytes], T],
        *,
        channel: int | None = None,
        traced: bool = True,
        require_active: bool = True,
    ) -> T:
        """One request/response on the wire; ``decode`` turns the reply into a value.

        Raises DeviceUnavailable (not active, or the port failed), DeviceTimeout
        (no complete reply in ``timeout_s``), or GarbledReply (``decode`` refused it).
        """
        if require_active and not self.active:
            raise DeviceUnavailable(
                f"the device {self.config.device} is {self._state.value}"
                + (f": {self.last_failure}" if self.last_failure else "")
            )
        with self._span(command, channel, len(request), traced) as span:
            started = time.perf_counter()
            try:
                reply = self.link.exchange(request, reply_length, self.config.timeout_s)
                span.set_attribute("serial.bytes_in", len(reply))
                value = decode(reply)
            except LineBusy:
                metrics.SERIAL_ERRORS.labels("busy").inc()
                raise
            except DeviceTimeout as exc:
                metrics.SERIAL_ERRORS.labels("timeout").inc()
                self._note_failure(str(exc))
                raise
            except DeviceUnavailable as exc:
                metrics.SERIAL_ERRORS.labels("unavailable").inc()
                self._fault(str(exc))
                raise
            except GarbledReply as exc:
                metrics.SERIAL_ERRORS.labels("garbled").inc()
                self._note_failure(str(exc))
                raise
            finally:
                elapsed = time.perf_counter() - started
                span.set_attribute("serial.latency_ms", round(elapsed * 1000, 3))
                metrics.observe_exchange(command, elapsed)
            with self._lock:
                self._failures_in_a_row = 0
            return value

    @contextlib.contextmanager
    def _span(
        self, command: str, channel: int | None, bytes_out: int, traced: bool
    ) -> Iterator[Span]:
        if not traced:
            yield trace.INVALID_SPAN
            return
        attributes: dict[str, Any] = {
            "servo.command": command,
            "serial.device": self.config.device,
            "serial.bytes_out": bytes_out,
        }
        if channel is not None:
            attributes["servo.channel"] = channel
        with tracer.start_as_current_span(
            f"serial {command}",
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except Exception as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                span.set_attribute("error.type", type(exc).__name__)
                raise

    def _note_failure(self, reason: str) -> None:
        """A timed-out or garbled exchange; enough in a row and the device is unusable."""
        with self._lock:
            self._failures_in_a_row += 1
            unusable = self._failures_in_a_row >= self.config.fault_after_failures
        if unusable:
            self._fault(f"{self._failures_in_a_row} exchanges in a row failed: {reason}")

    def read_errors(self, reply: bytes) -> int:
        """Decode a Get Errors reply and log it (a decoder for :meth:`exchange`)."""
        try:
            bits = int(protocol.decode_errors(reply))
        except ValueError:
            bits = None  # not two bytes
        if bits is None or bits & ~KNOWN_BITS:
            raise GarbledReply(f"Get Errors answered {reply.hex(' ')!r}: not an error register")
        self.errors.record(bits)
        return bits

    # --- polling ---

    def poll_once(self, *, require_active: bool = True) -> Snapshot:
        """Read every channel's position, the moving state and the error register in one
        pipelined exchange (one round trip instead of one per command)."""
        count = self.config.channel_count
        request = b"".join(
            self.config.encode(protocol.GetPosition(channel)) for channel in range(count)
        )
        request += self.config.encode(protocol.GetMovingState())
        request += self.config.encode(protocol.GetErrors())
        # Background reads every few ms would bury request traces: measured, not traced.
        snapshot = self.exchange(
            "poll",
            request,
            2 * count + 3,
            self._decode_poll,
            traced=False,
            require_active=require_active,
        )
        self._snapshot = snapshot
        for channel, position in enumerate(snapshot.positions):
            if position:
                angle = self.config.calibration_for(channel).quarter_us_to_angle(position)
                metrics.ACTUAL_ANGLE.labels(str(channel)).set(angle)
        return snapshot

    def _decode_poll(self, reply: bytes) -> Snapshot:
        count = self.config.channel_count
        garbled = GarbledReply(f"poll reply {reply.hex(' ')!r} holds impossible values")
        try:
            positions = tuple(
                protocol.decode_position(reply[2 * i : 2 * i + 2]) for i in range(count)
            )
            moving = protocol.decode_moving(reply[2 * count : 2 * count + 1])
        except ValueError:
            raise garbled from None
        if any(position > protocol.MAX_14BIT for position in positions):
            raise garbled
        self.read_errors(reply[2 * count + 1 :])
        previous = self._snapshot.positions if self._snapshot else positions
        return Snapshot(positions, previous, moving, time.time(), time.monotonic())

    # --- what requests read ---

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def is_stale(self, snapshot: Snapshot) -> bool:
        age = time.monotonic() - snapshot.sampled_mono
        return not self.active or age > self.config.stale_after_s

    def target(self, channel: int) -> Target | None:
        with self._lock:
            return self._targets.get(channel)

    def record_target(self, channel: int, target: Target) -> None:
        cause = trace.get_current_span().get_span_context()
        if cause.is_valid and target.cause is None:
            target = dataclasses.replace(target, cause=cause)
        with self._lock:
            self._targets[channel] = target
        metrics.TARGET_ANGLE.labels(str(channel)).set(target.angle)

    def status_json(self) -> dict[str, Any]:
        with self._lock:
            since = self.connected_since
            return {
                "state": self._state.value,
                "device": self.config.device,
                "connected_since": iso_time(since) if since else None,
                "connects": self.connects,
                "last_failure": self.last_failure,
            }
