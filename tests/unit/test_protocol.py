"""The Maestro wire format: documented byte examples, properties, the stream decoder."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.servo import protocol as p
from services.servo.protocol import ErrorBits

# --- documented examples -----------------------------------------------------


def test_set_target_1500us_on_channel_2_is_the_documented_bytes():
    assert p.encode_set_target(2, 6000) == bytes([0x84, 0x02, 0x70, 0x2E])


def test_crc7_of_the_documented_example():
    assert p.crc7(bytes([0xAA, 0x01, 0x10, 0x00])) == 0x6B


def test_crc_is_appended_over_the_whole_pololu_command():
    # Get Position channel 0 for device 1 is exactly the documented CRC example.
    assert p.encode_get_position(0, device=1, crc=True) == bytes([0xAA, 0x01, 0x10, 0x00, 0x6B])


def test_pololu_form_addresses_device_12_and_drops_the_command_high_bit():
    assert p.encode_set_target(2, 6000, device=12) == bytes([0xAA, 0x0C, 0x04, 0x02, 0x70, 0x2E])


def test_compact_encodings_of_every_command():
    assert p.encode_set_speed(1, 300) == bytes([0x87, 0x01, 0x2C, 0x02])
    assert p.encode_set_acceleration(1, 255) == bytes([0x89, 0x01, 0x7F, 0x01])
    assert p.encode_get_position(23) == bytes([0x90, 23])
    assert p.encode_get_moving_state() == bytes([0x93])
    assert p.encode_get_errors() == bytes([0xA1])
    assert p.encode_go_home() == bytes([0xA2])
    assert p.encode_set_multiple_targets(3, [6000, 0]) == bytes(
        [0x9F, 0x02, 0x03, 0x70, 0x2E, 0x00, 0x00]
    )


def test_get_position_reply_is_full_bytes_low_first():
    assert p.decode_position(bytes([0x70, 0x17])) == 6000
    assert p.decode_position(bytes([0xFF, 0xFF])) == 0xFFFF


def test_error_bits_have_the_documented_names_and_positions():
    assert [(bit.name, bit.value) for bit in ErrorBits] == [
        ("SERIAL_SIGNAL_ERROR", 1),
        ("SERIAL_OVERRUN_ERROR", 2),
        ("SERIAL_RX_BUFFER_FULL", 4),
        ("SERIAL_CRC_ERROR", 8),
        ("SERIAL_PROTOCOL_ERROR", 16),
        ("SERIAL_TIMEOUT", 32),
        ("SCRIPT_STACK_ERROR", 64),
        ("SCRIPT_CALL_STACK_ERROR", 128),
        ("SCRIPT_PROGRAM_COUNTER_ERROR", 256),
    ]
    assert p.decode_errors(bytes([0x18, 0x01])) == (
        ErrorBits.SERIAL_CRC_ERROR
        | ErrorBits.SERIAL_PROTOCOL_ERROR
        | ErrorBits.SCRIPT_PROGRAM_COUNTER_ERROR
    )


def test_moving_reply():
    assert p.decode_moving(b"\x01") is True
    assert p.decode_moving(b"\x00") is False
    with pytest.raises(ValueError, match="0 or 1"):
        p.decode_moving(b"\x02")


def test_reply_lengths():
    assert p.reply_length(p.GetPosition(0)) == 2
    assert p.reply_length(p.GetErrors()) == 2
    assert p.reply_length(p.GetMovingState()) == 1
    assert p.reply_length(0x90) == 2
    for command in (p.SetTarget(0, 0), p.SetSpeed(0, 0), p.GoHome(), p.SetAcceleration(0, 1)):
        assert p.reply_length(command) == 0


def test_7bit_pair():
    assert p.to_7bit_pair(0x3FFF) == (0x7F, 0x7F)
    assert p.from_7bit_pair(0x7F, 0x7F) == 0x3FFF


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: p.encode_set_target(24, 6000), r"channel must be in 0\.\.23, got 24"),
        (lambda: p.encode_set_target(-1, 6000), r"channel must be in 0\.\.23"),
        (lambda: p.encode_set_target(0, 16384), r"target must be in 0\.\.16383, got 16384"),
        (lambda: p.encode_set_speed(0, -1), r"speed must be in 0\.\.16383"),
        (lambda: p.encode_set_acceleration(0, 256), r"acceleration must be in 0\.\.255"),
        (lambda: p.encode_get_position(0, device=128), r"device must be in 0\.\.127"),
        (lambda: p.encode_set_target(True, 6000), r"channel must be an integer"),
        (lambda: p.encode_set_multiple_targets(20, [1] * 5), r"1\.\.4 values"),
        (lambda: p.encode_set_multiple_targets(0, []), r"1\.\.24 values"),
        (lambda: p.to_7bit_pair(1 << 14), r"value must be in 0\.\.16383"),
        (lambda: p.from_7bit_pair(0x80, 0), r"lo must be in 0\.\.127"),
        (lambda: p.decode_position(b"\x01"), r"exactly 2 bytes, got 1"),
        (lambda: p.decode_errors(b""), r"exactly 2 bytes, got 0"),
    ],
)
def test_bad_arguments_say_what_is_allowed(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_docstring_examples_run():
    result = doctest.testmod(p)
    assert result.attempted > 10
    assert result.failed == 0


# --- the stream decoder: examples --------------------------------------------


def commands(frames):
    return [frame.command for frame in frames]


def test_decoder_handles_any_chunking_and_reports_offsets():
    decoder = p.CommandDecoder()
    stream = p.encode_set_target(2, 6000) + p.encode_get_position(2, device=12)
    frames = [frame for byte in stream for frame in decoder.feed(bytes([byte]))]
    assert commands(frames) == [p.SetTarget(2, 6000), p.GetPosition(2)]
    assert [(f.device, f.offset, f.length) for f in frames] == [(None, 0, 4), (12, 4, 4)]
    assert decoder.take_errors() == ErrorBits(0)


def test_data_byte_where_a_command_is_expected_is_a_protocol_error():
    decoder = p.CommandDecoder()
    assert decoder.feed(b"\x05\x93") == [p.Frame(p.GetMovingState(), None, 1, 1)]
    assert decoder.take_errors() == ErrorBits.SERIAL_PROTOCOL_ERROR
    assert decoder.take_errors() == ErrorBits(0)  # taking clears


def test_command_byte_inside_a_command_resynchronises_on_it():
    decoder = p.CommandDecoder()
    assert commands(decoder.feed(b"\x84\x01" + p.encode_get_errors())) == [p.GetErrors()]
    assert decoder.errors == ErrorBits.SERIAL_PROTOCOL_ERROR


def test_unknown_command_and_missing_channel_are_protocol_errors():
    decoder = p.CommandDecoder(channels=12)
    assert decoder.feed(bytes([0xA7]) + p.encode_get_position(12)) == []
    assert decoder.errors == ErrorBits.SERIAL_PROTOCOL_ERROR


def test_other_device_numbers_are_ignored_silently():
    decoder = p.CommandDecoder(device_number=12)
    assert decoder.feed(p.encode_go_home(device=13)) == []
    assert commands(decoder.feed(p.encode_go_home(device=12))) == [p.GoHome()]
    assert decoder.errors == ErrorBits(0)


def test_crc_mode_rejects_a_wrong_crc_and_accepts_the_right_one():
    decoder = p.CommandDecoder(crc=True)
    good = p.encode_set_target(0, 6000, crc=True)
    bad = good[:-1] + bytes([good[-1] ^ 0x01])
    assert decoder.feed(bad) == []
    assert decoder.take_errors() == ErrorBits.SERIAL_CRC_ERROR
    assert commands(decoder.feed(good)) == [p.SetTarget(0, 6000)]
    assert decoder.take_errors() == ErrorBits(0)


def test_crc_mode_treats_a_command_without_crc_as_incomplete():
    decoder = p.CommandDecoder(crc=True)
    # Without its CRC byte the Get Errors waits; the next command byte breaks it.
    assert decoder.feed(p.encode_get_errors() + p.encode_get_errors(crc=True)) == [
        p.Frame(p.GetErrors(), None, 1, 2)
    ]
    assert decoder.errors == ErrorBits.SERIAL_PROTOCOL_ERROR


# --- properties --------------------------------------------------------------

channels = st.integers(0, 23)
values14 = st.integers(0, 0x3FFF)
devices = st.none() | st.integers(0, 127)


@st.composite
def maestro_commands(draw):
    kind = draw(st.sampled_from(list(p.CommandCode)))
    if kind is p.CommandCode.SET_TARGET:
        return p.SetTarget(draw(channels), draw(values14))
    if kind is p.CommandCode.SET_SPEED:
        return p.SetSpeed(draw(channels), draw(values14))
    if kind is p.CommandCode.SET_ACCELERATION:
        return p.SetAcceleration(draw(channels), draw(st.integers(0, 255)))
    if kind is p.CommandCode.GET_POSITION:
        return p.GetPosition(draw(channels))
    if kind is p.CommandCode.SET_MULTIPLE_TARGETS:
        first = draw(channels)
        targets = draw(st.lists(values14, min_size=1, max_size=24 - first))
        return p.SetMultipleTargets(first, tuple(targets))
    return {
        p.CommandCode.GET_MOVING_STATE: p.GetMovingState,
        p.CommandCode.GET_ERRORS: p.GetErrors,
        p.CommandCode.GO_HOME: p.GoHome,
    }[kind]()


@given(maestro_commands(), devices, st.booleans())
def test_every_command_round_trips_through_the_decoder(command, device, crc):
    wire = p.encode(command, device=device, crc=crc)
    decoder = p.CommandDecoder(device_number=12 if device is None else device, crc=crc)
    assert decoder.feed(wire) == [p.Frame(command, device, 0, len(wire))]
    assert decoder.errors == ErrorBits(0)
    assert all(byte < 0x80 for byte in wire[1:])  # only the first byte is a command byte


@given(values14)
def test_7bit_pairs_round_trip(value):
    assert p.from_7bit_pair(*p.to_7bit_pair(value)) == value


@given(st.integers(0, 0xFFFF))
def test_position_reply_round_trips(value):
    assert p.decode_position(p.encode_position_reply(value)) == value


@given(st.integers(0, 0xFFFF))
def test_errors_reply_round_trips(value):
    assert p.decode_errors(p.encode_errors_reply(value)) == value


@given(st.booleans())
def test_moving_reply_round_trips(moving):
    assert p.decode_moving(p.encode_moving_reply(moving)) is moving


@given(st.binary(max_size=300), st.booleans(), st.integers(1, 24))
def test_decoder_never_raises_on_arbitrary_bytes(garbage, crc, channel_count):
    decoder = p.CommandDecoder(crc=crc, channels=channel_count)
    for frame in decoder.feed(garbage):
        assert p.encode(frame.command, device=frame.device, crc=crc)  # valid commands only
    assert 0 <= decoder.pending <= len(garbage)


@given(st.binary(max_size=200), maestro_commands(), st.booleans(), st.booleans())
def test_decoder_resynchronises_after_garbage(garbage, command, pololu, crc):
    device = 12 if pololu else None
    decoder = p.CommandDecoder(crc=crc)
    decoder.feed(garbage)
    frames = decoder.feed(p.encode(command, device=device, crc=crc))
    # A partial command left by the garbage is cut short by our command byte.
    assert frames and frames[-1].command == command
    assert frames[-1].offset == len(garbage)


def test_iter_feed_reports_errors_in_stream_order():
    decoder = p.CommandDecoder()
    seen = []
    for frame in decoder.iter_feed(b"\x01" + p.encode_get_errors() + b"\x02\x03"):
        seen.append((frame.command, decoder.take_errors()))
    assert seen == [(p.GetErrors(), ErrorBits.SERIAL_PROTOCOL_ERROR)]
    assert decoder.take_errors() == ErrorBits.SERIAL_PROTOCOL_ERROR  # the bytes after it
