"""The Pololu Maestro serial protocol: pure encoding and decoding, no I/O.

Everything here turns Python values into the exact bytes a Maestro expects, or
bytes back into values. Nothing opens a port, sleeps or reads a clock, so the
servo controller, the simulator and the tests all share one definition of the
wire format.

Wire format, in short (from Pololu's Maestro user's guide):

* **Compact form**: ``cmd data...``; the command byte has its high bit set.
* **Pololu form**: ``0xAA device cmd&0x7F data...``; lets several devices share
  one line (the default device number is 12). A device ignores commands for
  other device numbers.
* **Data bytes** carry 7 bits. 14-bit values go low 7 bits first, then the high
  7 bits.
* **CRC-7** (optional, a device setting): one more byte after the command,
  computed over every byte of the command including ``0xAA`` and the device.
* **Units**: targets and positions are in quarter-microseconds (``6000`` is
  1500 us); target ``0`` switches a channel's pulses off.

Example, 1500 us on channel 2 in compact form:

>>> encode_set_target(2, 6000).hex(" ")
'84 02 70 2e'
>>> encode_set_target(2, 6000, device=12).hex(" ")
'aa 0c 04 02 70 2e'
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_DEVICE_NUMBER",
    "MAX_CHANNELS",
    "POLOLU_START",
    "CommandCode",
    "CommandDecoder",
    "ErrorBits",
    "Frame",
    "GetErrors",
    "GetMovingState",
    "GetPosition",
    "GoHome",
    "MaestroCommand",
    "SetAcceleration",
    "SetMultipleTargets",
    "SetSpeed",
    "SetTarget",
    "crc7",
    "decode_errors",
    "decode_moving",
    "decode_position",
    "encode",
    "encode_errors_reply",
    "encode_get_errors",
    "encode_get_moving_state",
    "encode_get_position",
    "encode_go_home",
    "encode_moving_reply",
    "encode_position_reply",
    "encode_set_acceleration",
    "encode_set_multiple_targets",
    "encode_set_speed",
    "encode_set_target",
    "from_7bit_pair",
    "reply_length",
    "to_7bit_pair",
]

POLOLU_START = 0xAA
"""First byte of a Pololu-form command."""

DEFAULT_DEVICE_NUMBER = 12
"""Factory device number of every Maestro."""

MAX_CHANNELS = 24
"""The largest Maestro has 24 channels, numbered 0..23."""

MAX_14BIT = 0x3FFF
MAX_ACCELERATION = 255
MAX_DEVICE_NUMBER = 0x7F


class CommandCode(enum.IntEnum):
    """Compact-form command bytes (the Pololu form sends ``code & 0x7F``)."""

    SET_TARGET = 0x84
    SET_SPEED = 0x87
    SET_ACCELERATION = 0x89
    GET_POSITION = 0x90
    GET_MOVING_STATE = 0x93
    SET_MULTIPLE_TARGETS = 0x9F
    GET_ERRORS = 0xA1
    GO_HOME = 0xA2


_CODES = frozenset(int(code) for code in CommandCode)


class ErrorBits(enum.IntFlag):
    """Bits of the Maestro error register, as returned by Get Errors.

    >>> ErrorBits(0x18)
    <ErrorBits.SERIAL_CRC_ERROR|SERIAL_PROTOCOL_ERROR: 24>
    """

    SERIAL_SIGNAL_ERROR = 1 << 0
    SERIAL_OVERRUN_ERROR = 1 << 1
    SERIAL_RX_BUFFER_FULL = 1 << 2
    SERIAL_CRC_ERROR = 1 << 3
    SERIAL_PROTOCOL_ERROR = 1 << 4
    SERIAL_TIMEOUT = 1 << 5
    SCRIPT_STACK_ERROR = 1 << 6
    SCRIPT_CALL_STACK_ERROR = 1 << 7
    SCRIPT_PROGRAM_COUNTER_ERROR = 1 << 8


# --- low-level helpers -------------------------------------------------------


def crc7(data: Iterable[int]) -> int:
    """Return the Maestro's CRC-7 of ``data`` (the byte to append to a command).

    >>> hex(crc7(bytes([0xAA, 0x01, 0x10, 0x00])))
    '0x6b'
    """
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            if crc & 1:
                crc ^= 0x91
            crc >>= 1
    return crc


def to_7bit_pair(value: int) -> tuple[int, int]:
    """Split a 14-bit value into ``(low 7 bits, high 7 bits)`` data bytes.

    >>> to_7bit_pair(6000)
    (112, 46)
    """
    _check_range("value", value, 0, MAX_14BIT)
    return value & 0x7F, (value >> 7) & 0x7F


def from_7bit_pair(lo: int, hi: int) -> int:
    """Join two 7-bit data bytes (low first) into a 14-bit value.

    >>> from_7bit_pair(0x70, 0x2E)
    6000
    """
    _check_range("lo", lo, 0, 0x7F)
    _check_range("hi", hi, 0, 0x7F)
    return lo | (hi << 7)


def _check_range(name: str, value: int, low: int, high: int) -> None:
    # bool is an int subclass; True as a channel number is a caller bug.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, got {value}")


def _check_channel(channel: int) -> None:
    _check_range("channel", channel, 0, MAX_CHANNELS - 1)


# --- command objects ---------------------------------------------------------


@dataclass(frozen=True)
class SetTarget:
    """Set Target (0x84): move ``channel`` toward ``target`` quarter-us; 0 = off."""

    channel: int
    target: int

    code = CommandCode.SET_TARGET

    def __post_init__(self) -> None:
        _check_channel(self.channel)
        _check_range("target", self.target, 0, MAX_14BIT)

    def data(self) -> bytes:
        return bytes([self.channel, *to_7bit_pair(self.target)])


@dataclass(frozen=True)
class SetMultipleTargets:
    """Set Multiple Targets (0x9F): targets for consecutive channels from ``first_channel``."""

    first_channel: int
    targets: tuple[int, ...]

    code = CommandCode.SET_MULTIPLE_TARGETS

    def __post_init__(self) -> None:
        _check_channel(self.first_channel)
        object.__setattr__(self, "targets", tuple(self.targets))
        count = len(self.targets)
        if not 1 <= count <= MAX_CHANNELS - self.first_channel:
            raise ValueError(
                f"targets must hold 1..{MAX_CHANNELS - self.first_channel} values when "
                f"first_channel is {self.first_channel}, got {count}"
            )
        for target in self.targets:
            _check_range("target", target, 0, MAX_14BIT)

    def data(self) -> bytes:
        out = bytearray([len(self.targets), self.first_channel])
        for target in self.targets:
            out.extend(to_7bit_pair(target))
        return bytes(out)


@dataclass(frozen=True)
class SetSpeed:
    """Set Speed (0x87): limit in 0.25 us per 10 ms; 0 = unlimited."""

    channel: int
    speed: int

    code = CommandCode.SET_SPEED

    def __post_init__(self) -> None:
        _check_channel(self.channel)
        _check_range("speed", self.speed, 0, MAX_14BIT)

    def data(self) -> bytes:
        return bytes([self.channel, *to_7bit_pair(self.speed)])


@dataclass(frozen=True)
class SetAcceleration:
    """Set Acceleration (0x89): limit in 0.25 us / 10 ms / 80 ms, 0..255; 0 = unlimited."""

    channel: int
    acceleration: int

    code = CommandCode.SET_ACCELERATION

    def __post_init__(self) -> None:
        _check_channel(self.channel)
        _check_range("acceleration", self.acceleration, 0, MAX_ACCELERATION)

    def data(self) -> bytes:
        return bytes([self.channel, *to_7bit_pair(self.acceleration)])


@dataclass(frozen=True)
class GetPosition:
    """Get Position (0x90): the reply is 2 bytes, the position in quarter-us."""

    channel: int

    code = CommandCode.GET_POSITION

    def __post_init__(self) -> None:
        _check_channel(self.channel)

    def data(self) -> bytes:
        return bytes([self.channel])


@dataclass(frozen=True)
class GetMovingState:
    """Get Moving State (0x93): the reply is 1 byte, 1 while any servo moves."""

    code = CommandCode.GET_MOVING_STATE

    def data(self) -> bytes:
        return b""


@dataclass(frozen=True)
class GetErrors:
    """Get Errors (0xA1): the reply is 2 bytes of :class:`ErrorBits`; reading clears them."""

    code = CommandCode.GET_ERRORS

    def data(self) -> bytes:
        return b""


@dataclass(frozen=True)
class GoHome:
    """Go Home (0xA2): every channel goes to its configured home (a target or off)."""

    code = CommandCode.GO_HOME

    def data(self) -> bytes:
        return b""


MaestroCommand = (
    SetTarget
    | SetMultipleTargets
    | SetSpeed
    | SetAcceleration
    | GetPosition
    | GetMovingState
    | GetErrors
    | GoHome
)

_REPLY_LENGTHS = {
    CommandCode.GET_POSITION: 2,
    CommandCode.GET_MOVING_STATE: 1,
    CommandCode.GET_ERRORS: 2,
}


def reply_length(command: MaestroCommand | int) -> int:
    """Return how many bytes the device answers to ``command`` (0 for none).

    ``command`` is a command object or a compact command byte.

    >>> reply_length(GetPosition(0)), reply_length(0x84)
    (2, 0)
    """
    code = command if isinstance(command, int) else command.code
    return _REPLY_LENGTHS.get(code, 0)


# --- encoders ----------------------------------------------------------------


def encode(command: MaestroCommand, *, device: int | None = None, crc: bool = False) -> bytes:
    """Return the bytes of ``command``.

    ``device=None`` gives the compact form; a device number (0..127) gives the
    Pololu form addressed to that device. ``crc=True`` appends the CRC-7 byte.

    >>> encode(GetPosition(1), device=12, crc=True).hex(" ")
    'aa 0c 10 01 40'
    """
    if device is None:
        out = bytearray([command.code])
    else:
        _check_range("device", device, 0, MAX_DEVICE_NUMBER)
        out = bytearray([POLOLU_START, device, command.code & 0x7F])
    out.extend(command.data())
    if crc:
        out.append(crc7(out))
    return bytes(out)


def encode_set_target(
    channel: int, target: int, *, device: int | None = None, crc: bool = False
) -> bytes:
    """Set Target: ``target`` in quarter-us (0 = off).

    >>> encode_set_target(0, 4000).hex(" ")
    '84 00 20 1f'
    """
    return encode(SetTarget(channel, target), device=device, crc=crc)


def encode_set_multiple_targets(
    first_channel: int, targets: Iterable[int], *, device: int | None = None, crc: bool = False
) -> bytes:
    """Set Multiple Targets for ``len(targets)`` consecutive channels.

    >>> encode_set_multiple_targets(1, [6000, 4000]).hex(" ")
    '9f 02 01 70 2e 20 1f'
    """
    return encode(SetMultipleTargets(first_channel, tuple(targets)), device=device, crc=crc)


def encode_set_speed(
    channel: int, speed: int, *, device: int | None = None, crc: bool = False
) -> bytes:
    """Set Speed in 0.25 us / 10 ms (0 = unlimited).

    >>> encode_set_speed(5, 140).hex(" ")
    '87 05 0c 01'
    """
    return encode(SetSpeed(channel, speed), device=device, crc=crc)


def encode_set_acceleration(
    channel: int, acceleration: int, *, device: int | None = None, crc: bool = False
) -> bytes:
    """Set Acceleration in 0.25 us / 10 ms / 80 ms, 0..255 (0 = unlimited).

    >>> encode_set_acceleration(3, 4).hex(" ")
    '89 03 04 00'
    """
    return encode(SetAcceleration(channel, acceleration), device=device, crc=crc)


def encode_get_position(channel: int, *, device: int | None = None, crc: bool = False) -> bytes:
    """Get Position; read :func:`reply_length` (2) bytes, then :func:`decode_position`.

    >>> encode_get_position(2).hex(" ")
    '90 02'
    """
    return encode(GetPosition(channel), device=device, crc=crc)


def encode_get_moving_state(*, device: int | None = None, crc: bool = False) -> bytes:
    """Get Moving State; read 1 byte, then :func:`decode_moving`.

    >>> encode_get_moving_state().hex()
    '93'
    """
    return encode(GetMovingState(), device=device, crc=crc)


def encode_get_errors(*, device: int | None = None, crc: bool = False) -> bytes:
    """Get Errors; read 2 bytes, then :func:`decode_errors`.

    >>> encode_get_errors(device=12).hex(" ")
    'aa 0c 21'
    """
    return encode(GetErrors(), device=device, crc=crc)


def encode_go_home(*, device: int | None = None, crc: bool = False) -> bytes:
    """Go Home: every channel to its home position.

    >>> encode_go_home().hex()
    'a2'
    """
    return encode(GoHome(), device=device, crc=crc)


# --- replies -----------------------------------------------------------------


def _check_reply(name: str, reply: bytes, length: int) -> None:
    if len(reply) != length:
        raise ValueError(
            f"{name} reply must be exactly {length} bytes, "
            f"got {len(reply)} ({bytes(reply).hex()!r})"
        )


def encode_position_reply(position: int) -> bytes:
    """The device's answer to Get Position: 16 bits, low byte first.

    >>> encode_position_reply(6000).hex(" ")
    '70 17'
    """
    _check_range("position", position, 0, 0xFFFF)
    return position.to_bytes(2, "little")


def decode_position(reply: bytes) -> int:
    """Decode a Get Position reply into quarter-microseconds.

    >>> decode_position(bytes([0x70, 0x17]))
    6000
    """
    _check_reply("Get Position", reply, 2)
    return int.from_bytes(reply, "little")


def encode_errors_reply(errors: int) -> bytes:
    """The device's answer to Get Errors: 16 bits, low byte first.

    >>> encode_errors_reply(ErrorBits.SERIAL_CRC_ERROR).hex(" ")
    '08 00'
    """
    _check_range("errors", int(errors), 0, 0xFFFF)
    return int(errors).to_bytes(2, "little")


def decode_errors(reply: bytes) -> ErrorBits:
    """Decode a Get Errors reply into :class:`ErrorBits`.

    >>> decode_errors(bytes([0x10, 0x00]))
    <ErrorBits.SERIAL_PROTOCOL_ERROR: 16>
    """
    _check_reply("Get Errors", reply, 2)
    return ErrorBits(int.from_bytes(reply, "little"))


def encode_moving_reply(moving: bool) -> bytes:
    """The device's answer to Get Moving State.

    >>> encode_moving_reply(True)
    b'\\x01'
    """
    return b"\x01" if moving else b"\x00"


def decode_moving(reply: bytes) -> bool:
    """Decode a Get Moving State reply: True while any servo is still moving.

    >>> decode_moving(b"\\x00")
    False
    """
    _check_reply("Get Moving State", reply, 1)
    if reply[0] > 1:
        raise ValueError(f"Get Moving State reply must be 0 or 1, got {reply[0]}")
    return reply[0] == 1


# --- streaming decoder -------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """One command decoded from the byte stream.

    ``device`` is None for the compact form, else the Pololu-form device number.
    ``offset`` is the stream position of the command's first byte (counting
    every byte ever fed) and ``length`` its size on the wire, so a caller can
    tell when the command arrived and how long it took to send.
    """

    command: MaestroCommand
    device: int | None
    offset: int
    length: int


# Data bytes that follow the command byte, for fixed-length commands.
_FIXED_DATA_LENGTHS = {
    CommandCode.SET_TARGET: 3,
    CommandCode.SET_SPEED: 3,
    CommandCode.SET_ACCELERATION: 3,
    CommandCode.GET_POSITION: 1,
    CommandCode.GET_MOVING_STATE: 0,
    CommandCode.GET_ERRORS: 0,
    CommandCode.GO_HOME: 0,
}


@dataclass
class CommandDecoder:
    """Turn a byte stream into commands the way a Maestro does.

    Feed bytes in any chunking; :meth:`feed` returns the complete commands.
    Malformed input never raises: it sets bits in :attr:`errors`, which
    :meth:`take_errors` returns and clears:

    * a data byte where a command byte is expected, a command byte inside a
      command, an unknown command, or a channel this device does not have:
      ``SERIAL_PROTOCOL_ERROR``; decoding resumes at the next command byte;
    * with ``crc=True``, a command whose CRC byte is wrong:
      ``SERIAL_CRC_ERROR``, and the command is dropped.

    Pololu-form commands for another device number are consumed and ignored.

    >>> decoder = CommandDecoder()
    >>> [f.command for f in decoder.feed(bytes.fromhex("84 02 70 2e 90"))]
    [SetTarget(channel=2, target=6000)]
    >>> [f.command for f in decoder.feed(b"\\x02")]
    [GetPosition(channel=2)]
    >>> [f.command for f in decoder.feed(b"\\x05\\x93")]  # 0x05: a stray data byte
    [GetMovingState()]
    >>> decoder.take_errors()
    <ErrorBits.SERIAL_PROTOCOL_ERROR: 16>
    """

    device_number: int = DEFAULT_DEVICE_NUMBER
    crc: bool = False
    channels: int = MAX_CHANNELS
    errors: ErrorBits = ErrorBits(0)  # noqa: RUF009 (an immutable flag value)
    _buffer: bytearray = field(default_factory=bytearray, repr=False)
    _offset: int = field(default=0, repr=False)  # stream position of _buffer[0]

    def __post_init__(self) -> None:
        _check_range("device_number", self.device_number, 0, MAX_DEVICE_NUMBER)
        _check_range("channels", self.channels, 1, MAX_CHANNELS)

    @property
    def pending(self) -> int:
        """How many bytes of an incomplete command are buffered."""
        return len(self._buffer)

    def take_errors(self) -> ErrorBits:
        """Return the error bits seen so far and clear them."""
        errors, self.errors = self.errors, ErrorBits(0)
        return errors

    def feed(self, data: bytes) -> list[Frame]:
        """Consume ``data``; return the commands it completes, in order."""
        return list(self.iter_feed(data))

    def iter_feed(self, data: bytes) -> Iterator[Frame]:
        """Like :meth:`feed`, but lazily: when a frame is yielded, :attr:`errors`
        holds exactly the errors of the bytes before it, so a device can apply
        errors and commands in stream order (a Get Errors must not clear an
        error that comes after it)."""
        for byte in data:
            frame = self._push(byte)
            if frame is not None:
                yield frame

    def _restart(self) -> None:
        self._offset += len(self._buffer)
        self._buffer.clear()

    def _push(self, byte: int) -> Frame | None:
        buf = self._buffer
        if buf and byte & 0x80:
            # A command byte inside a command: drop the partial one and treat
            # this byte as the start of the next (the Maestro resynchronises).
            self.errors |= ErrorBits.SERIAL_PROTOCOL_ERROR
            self._restart()
        if not buf:
            if not byte & 0x80:
                self.errors |= ErrorBits.SERIAL_PROTOCOL_ERROR
                self._offset += 1
                return None
            if byte != POLOLU_START and byte not in _CODES:
                self.errors |= ErrorBits.SERIAL_PROTOCOL_ERROR
                self._offset += 1
                return None
        buf.append(byte)
        return self._try_complete()

    def _try_complete(self) -> Frame | None:
        buf = self._buffer
        if buf[0] == POLOLU_START:
            if len(buf) < 3:
                return None
            device: int | None = buf[1]
            code_byte = buf[2] | 0x80
            if code_byte not in _CODES:
                self.errors |= ErrorBits.SERIAL_PROTOCOL_ERROR
                self._restart()
                return None
            header = 3
        else:
            device = None
            code_byte = buf[0]
            header = 1
        code = CommandCode(code_byte)
        data_length = self._data_length(code, buf, header)
        if data_length is None:
            return None
        total = header + data_length + (1 if self.crc else 0)
        if len(buf) < total:
            return None

        offset = self._offset
        raw = bytes(buf)
        self._restart()
        if self.crc and crc7(raw[:-1]) != raw[-1]:
            self.errors |= ErrorBits.SERIAL_CRC_ERROR
            return None
        if device is not None and device != self.device_number:
            return None
        command = self._build(code, raw[header : header + data_length])
        if command is None:
            self.errors |= ErrorBits.SERIAL_PROTOCOL_ERROR
            return None
        return Frame(command=command, device=device, offset=offset, length=total)

    @staticmethod
    def _data_length(code: CommandCode, buf: bytearray, header: int) -> int | None:
        if code is CommandCode.SET_MULTIPLE_TARGETS:
            if len(buf) < header + 1:
                return None
            return 2 + 2 * buf[header]
        return _FIXED_DATA_LENGTHS[code]

    def _build(self, code: CommandCode, data: bytes) -> MaestroCommand | None:
        """Make the command object, or None if its arguments are invalid here."""
        channels = self.channels
        if code is CommandCode.SET_MULTIPLE_TARGETS:
            count, first = data[0], data[1]
            if count == 0 or first + count > channels:
                return None
            targets = tuple(from_7bit_pair(data[i], data[i + 1]) for i in range(2, len(data), 2))
            return SetMultipleTargets(first, targets)
        if code in (CommandCode.GET_MOVING_STATE, CommandCode.GET_ERRORS, CommandCode.GO_HOME):
            return {
                CommandCode.GET_MOVING_STATE: GetMovingState,
                CommandCode.GET_ERRORS: GetErrors,
                CommandCode.GO_HOME: GoHome,
            }[code]()
        channel = data[0]
        if channel >= channels:
            return None
        if code is CommandCode.GET_POSITION:
            return GetPosition(channel)
        value = from_7bit_pair(data[1], data[2])
        if code is CommandCode.SET_TARGET:
            return SetTarget(channel, value)
        if code is CommandCode.SET_SPEED:
            return SetSpeed(channel, value)
        if value > MAX_ACCELERATION:
            return None
        return SetAcceleration(channel, value)
