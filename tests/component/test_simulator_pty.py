"""The Maestro simulator on a real pty, driven through pyserial like a real client."""

from __future__ import annotations

import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import serial

from services.servo import protocol as p
from services.servo.protocol import ErrorBits
from services.servo.simulator import Simulator, SimulatorConfig

pytestmark = [pytest.mark.component, pytest.mark.timeout(30)]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_trace_export(monkeypatch):
    """The control API is a service of the stack: no Jaeger here to export its spans to."""
    monkeypatch.setenv("SERVOSCOPE_TELEMETRY_ENABLED", "false")


@pytest.fixture
def start_sim():
    """Start in-process simulators (with a control server) and open ports; clean up after."""
    sims: list[Simulator] = []
    ports: list[serial.Serial] = []

    def start(**config) -> tuple[Simulator, serial.Serial]:
        config.setdefault("control_port", 0)
        sim = Simulator(SimulatorConfig(**config))
        sim.start()
        sims.append(sim)
        port = serial.Serial(sim.device_path, baudrate=115200, timeout=1)
        ports.append(port)
        return sim, port

    yield start
    for port in ports:
        port.close()
    for sim in sims:
        sim.stop()


def ask(port: serial.Serial, request: bytes, size: int) -> bytes:
    port.write(request)
    return port.read(size)


def position(port: serial.Serial, channel: int = 0, **form) -> int:
    return p.decode_position(ask(port, p.encode_get_position(channel, **form), 2))


def settle(port: serial.Serial, timeout: float = 2.0, **form) -> None:
    """Wait until no servo moves (positions change on 10 ms ticks, even at full speed)."""
    deadline = time.monotonic() + timeout
    while p.decode_moving(ask(port, p.encode_get_moving_state(**form), 1)):
        assert time.monotonic() < deadline, "servos still moving"


def errors(port: serial.Serial, **form) -> ErrorBits:
    return p.decode_errors(ask(port, p.encode_get_errors(**form), 2))


def http(sim: Simulator, method: str, path: str, body: bytes | None = None):
    """(status, content type, JSON body) of one control request."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    request = urllib.request.Request(
        sim.control_url + path, data=body, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers["Content-Type"], json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers["Content-Type"], json.load(error)


# --- protocol over the wire --------------------------------------------------


def test_set_target_converges_at_the_rate_the_speed_predicts(start_sim):
    _, port = start_sim(speed=100)  # 25 us per 10 ms: 1000 quarter-us take 100 ms
    assert position(port) == 6000
    port.write(p.encode_set_target(0, 7000))
    started = time.monotonic()
    samples = []
    while time.monotonic() - started < 1.0:
        # The device read the position somewhere between asking and the answer.
        asked = time.monotonic() - started
        pos = position(port)
        samples.append((asked, time.monotonic() - started, pos))
        if pos == 7000:
            break
        time.sleep(0.005)
    arrived = samples[-1][0]
    assert samples[-1][2] == 7000
    assert 0.08 <= arrived <= 0.25, samples
    # Mid-way samples lie on the 100-per-tick line (within two ticks of jitter).
    for asked, answered, pos in samples[:-1]:
        assert 6000 + (asked / 0.01 - 2) * 100 <= pos <= 6000 + (answered / 0.01 + 1) * 100
    assert ask(port, p.encode_get_moving_state(), 1) == b"\x00"


def test_moving_state_multiple_targets_and_go_home(start_sim):
    sim, port = start_sim(speed=20)
    port.write(p.encode_set_multiple_targets(1, [7000, 5000]))
    assert p.decode_moving(ask(port, p.encode_get_moving_state(), 1)) is True
    deadline = time.monotonic() + 2
    while p.decode_moving(ask(port, p.encode_get_moving_state(), 1)):
        assert time.monotonic() < deadline
    assert [position(port, 1), position(port, 2)] == [7000, 5000]
    port.write(p.encode_set_target(3, 0) + p.encode_set_target(4, 100))
    assert position(port, 3) == 0  # off at once
    assert sim.snapshot()["channels"][4]["target_qus"] == 3968  # clamped to 992 us
    port.write(p.encode_go_home())
    time.sleep(0.6)
    assert [position(port, ch) for ch in range(5)] == [6000] * 5


def test_pololu_form_and_other_device_numbers(start_sim):
    _, port = start_sim(device_number=12)
    port.write(p.encode_set_target(5, 7200, device=12))
    settle(port, device=12)
    assert position(port, 5, device=12) == 7200
    port.write(p.encode_set_target(5, 4400, device=13))  # not for us: ignored
    port.timeout = 0.2
    assert ask(port, p.encode_get_position(5, device=13), 2) == b""
    assert position(port, 5) == 7200
    assert errors(port) == ErrorBits(0)


def test_crc_mode_accepts_good_crcs_and_flags_bad_ones(start_sim):
    _, port = start_sim(crc=True)
    port.write(p.encode_set_target(0, 7000, crc=True))
    settle(port, crc=True)
    assert position(port, crc=True) == 7000
    assert position(port, device=12, crc=True) == 7000
    bad = bytearray(p.encode_set_target(0, 5000, crc=True))
    bad[-1] ^= 0x01
    port.write(bytes(bad))
    assert errors(port, crc=True) == ErrorBits.SERIAL_CRC_ERROR
    assert errors(port, crc=True) == ErrorBits(0)  # reading cleared it
    assert position(port, crc=True) == 7000  # the bad command was ignored


def test_garbage_then_a_valid_command_still_works(start_sim):
    _, port = start_sim()
    # The garbage holds every command byte, so Get Position/Errors/Moving answer too.
    port.write(bytes(range(0, 0x80, 3)) + b"\x84\x01\xaa\x0c" + bytes(range(0x80, 0x100)))
    time.sleep(0.1)
    port.reset_input_buffer()
    port.write(p.encode_set_target(1, 7777))
    settle(port)
    assert position(port, 1) == 7777
    assert errors(port) & ErrorBits.SERIAL_PROTOCOL_ERROR


def test_survives_a_flood_of_random_bytes(start_sim):
    sim, port = start_sim(crc=True)
    noise = random.Random(1234).randbytes(64 * 1024)
    for offset in range(0, len(noise), 4096):
        port.write(noise[offset : offset + 4096])
        port.reset_input_buffer()  # the noise elicits replies; nobody wants them
    deadline = time.monotonic() + 5
    while sim.snapshot()["bytes_received"] < len(noise):
        assert time.monotonic() < deadline
    time.sleep(0.05)
    port.reset_input_buffer()
    port.write(p.encode_set_target(0, 7000, crc=True))
    settle(port, crc=True)
    assert position(port, crc=True) == 7000


def test_bytes_that_a_tty_would_translate_arrive_unchanged(start_sim):
    _, port = start_sim()
    # ^C, ^D, LF, CR, XON, XOFF, ^Z, ^\\, DEL as the low data byte of in-range targets.
    for low in (0x03, 0x04, 0x0A, 0x0D, 0x11, 0x13, 0x1A, 0x1C, 0x7F):
        target = low | 0x30 << 7
        port.write(p.encode_set_target(0, target))
        settle(port)
        assert position(port) == target


def test_a_client_that_sets_no_termios_still_gets_exact_bytes():
    """The simulator puts the pty in raw mode itself: no CR/LF mapping, no line buffering."""
    # No pyserial here: opening with pyserial would set raw mode for us.
    with Simulator(SimulatorConfig()) as sim:
        fd = os.open(sim.device_path, os.O_RDWR | os.O_NOCTTY)
        try:
            exchange_raw(fd)
        finally:
            os.close(fd)


def exchange_raw(fd: int) -> None:
    target = 0x0A | 0x30 << 7  # LF as a request byte and as a reply byte
    os.write(fd, p.encode_set_target(0, target))
    time.sleep(0.05)  # a few ticks: the servo arrives at unlimited speed
    os.write(fd, p.encode_get_position(0))
    reply = b""
    deadline = time.monotonic() + 2
    while len(reply) < 2 and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            reply += os.read(fd, 2 - len(reply))
    assert reply == bytes([0x0A, 0x18])  # 6154, full 8-bit bytes, low first


def test_replies_are_paced_like_a_real_line(start_sim):
    _, slow_line = start_sim(baud=1200)  # (2 + 2) bytes * 10 bits / 1200 = 33 ms
    _, fast_line = start_sim(baud=0)

    def round_trip(port):
        started = time.monotonic()
        assert len(ask(port, p.encode_get_position(0), 2)) == 2
        return time.monotonic() - started

    assert min(round_trip(slow_line) for _ in range(3)) >= 0.033
    assert min(round_trip(fast_line) for _ in range(3)) < 0.02


def test_commands_written_together_are_paced_one_after_another(start_sim):
    _, port = start_sim(baud=1200)  # full duplex: 10 requests of 2 bytes, then the last reply
    started = time.monotonic()
    replies = ask(port, p.encode_get_position(0) * 10, 20)
    assert replies == p.encode_position_reply(6000) * 10
    assert time.monotonic() - started >= (10 * 2 + 2) * 10 / 1200  # requests, then a reply


def test_a_client_can_close_and_another_reopen(start_sim):
    sim, port = start_sim()
    port.write(p.encode_set_target(0, 7000))
    settle(port)
    port.close()
    time.sleep(0.1)
    with serial.Serial(sim.device_path, baudrate=115200, timeout=1) as again:
        assert position(again) == 7000


# --- fault modes through the control interface ------------------------------


def test_stall_makes_reads_time_out_but_bytes_are_still_received(start_sim):
    sim, port = start_sim()
    status, _, body = http(sim, "PUT", "/faults/stall")
    assert (status, body) == (200, {"faults": {"stall": {}}})
    before = sim.snapshot()["bytes_received"]
    port.timeout = 0.3
    started = time.monotonic()
    assert ask(port, p.encode_get_position(0), 2) == b""
    assert time.monotonic() - started >= 0.29
    assert sim.snapshot()["bytes_received"] == before + 2
    # A hung controller executes nothing either.
    commands = sim.snapshot()["commands_received"]
    port.write(p.encode_set_target(0, 7000))
    time.sleep(0.05)
    assert sim.snapshot()["commands_received"] == commands
    assert sim.snapshot()["channels"][0]["target_qus"] == 6000
    assert http(sim, "DELETE", "/faults/stall")[2] == {"faults": {}}
    port.timeout = 1
    assert position(port) == 6000


def test_slow_adds_the_configured_latency(start_sim):
    sim, port = start_sim()
    status, _, body = http(sim, "PUT", "/faults/slow", b'{"latency_s": 0.2}')
    assert (status, body) == (200, {"faults": {"slow": {"latency_s": 0.2}}})
    started = time.monotonic()
    assert position(port) == 6000
    assert 0.2 <= time.monotonic() - started < 0.8
    http(sim, "DELETE", "/faults")
    started = time.monotonic()
    assert position(port) == 6000
    assert time.monotonic() - started < 0.1


def test_garble_corrupts_replies(start_sim):
    sim, port = start_sim()
    assert http(sim, "PUT", "/faults/garble", b'{"probability": 1.0}')[0] == 200
    for _ in range(5):
        reply = ask(port, p.encode_get_position(0), 2)
        assert len(reply) == 2
        assert reply[0] != 0x70 and reply[1] != 0x17  # every byte of 6000 changed
    http(sim, "DELETE", "/faults/garble")
    assert position(port) == 6000


def test_error_fault_sets_bits_that_reading_clears(start_sim):
    sim, port = start_sim()
    assert http(sim, "PUT", "/faults/error", b'{"bits": 33}')[0] == 200
    assert http(sim, "GET", "/state")[2]["errors"] == 33
    assert errors(port) == ErrorBits.SERIAL_SIGNAL_ERROR | ErrorBits.SERIAL_TIMEOUT
    assert errors(port) == ErrorBits(0)
    sim.set_fault("error", bits=8, sticky=True)
    assert errors(port) == ErrorBits.SERIAL_CRC_ERROR
    assert errors(port) == ErrorBits.SERIAL_CRC_ERROR  # sticky: it comes back
    sim.clear_fault("error")
    errors(port)
    assert errors(port) == ErrorBits(0)


def test_unplug_fails_the_client_and_replug_serves_a_new_pty_at_the_link(start_sim, tmp_path):
    link = tmp_path / "maestro"
    sim, port = start_sim(link=str(link))
    assert os.readlink(link) == sim.device_path
    port.write(p.encode_set_target(0, 7000))
    settle(port)
    assert http(sim, "PUT", "/faults/unplug")[0] == 200
    assert sim.snapshot()["device"] is None
    assert not link.exists()
    with pytest.raises(serial.SerialException):
        port.write(p.encode_get_position(0))
        port.read(2)
    # The client still holds the old slave, so the new pty gets a new number.
    status, _, body = http(sim, "DELETE", "/faults/unplug")
    assert (status, body) == (200, {"faults": {}})
    assert sim.device_path is not None and sim.device_path != port.port
    assert os.readlink(link) == sim.device_path
    with serial.Serial(str(link), baudrate=115200, timeout=1) as again:
        assert position(again) == 7000  # the controller kept its state


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "detail"),
    [
        ("PUT", "/faults/explode", None, 400, "unknown fault mode 'explode'"),
        ("PUT", "/faults/slow", b'{"latency_s": -1}', 400, "latency_s must be a number"),
        ("PUT", "/faults/slow", b'{"latency": 1}', 400, "unknown parameter 'latency'"),
        ("PUT", "/faults/garble", b'{"probability": "1"}', 400, "probability must be"),
        ("PUT", "/faults/error", None, 400, "bits must be an integer in 1..65535"),
        ("PUT", "/faults/error", b'{"bits": true}', 400, "bits must be an integer"),
        ("PUT", "/faults/stall", b"{not json", 400, "not valid JSON"),
        ("PUT", "/faults/stall", b"[1]", 400, "must be a JSON object"),
        ("DELETE", "/faults/explode", None, 400, "unknown fault mode"),
        ("GET", "/nowhere", None, 404, "no such resource"),
        ("POST", "/state", b"{}", 405, "use GET"),
    ],
)
def test_bad_control_input_is_a_problem_and_never_touches_the_wire(
    start_sim, method, path, body, status, detail
):
    sim, _ = start_sim()
    before = sim.snapshot()
    got_status, content_type, problem = http(sim, method, path, body)
    assert got_status == status
    assert content_type == "application/problem+json"
    assert problem["status"] == status and problem["title"] and problem["type"]
    assert detail in problem["detail"]
    after = sim.snapshot()
    assert after["faults"] == {} and after["errors"] == 0
    assert after["bytes_received"] == before["bytes_received"] == 0


def test_the_control_api_speaks_like_every_service_of_the_stack(start_sim):
    sim, _ = start_sim()
    # A body that does not say it is JSON (urllib's default is form-encoded): 415.
    form = urllib.request.Request(
        sim.control_url + "/faults/slow", data=b'{"latency_s": 1}', method="PUT"
    )
    with pytest.raises(urllib.error.HTTPError) as refused, urllib.request.urlopen(form):
        pass
    with refused.value as error:
        assert error.code == 415
        problem = json.load(error)
    assert problem["type"] == "/problems/unsupported-media-type"
    assert sim.snapshot()["faults"] == {}
    invalid = http(sim, "PUT", "/faults/explode")[2]
    assert invalid["type"] == "/problems/invalid-fault"
    with urllib.request.urlopen(sim.control_url + invalid["type"]) as doc:
        assert doc.read().decode().startswith("## invalid-fault")
    assert http(sim, "GET", "/healthz")[2]["service"] == "maestro-simulator"


def test_state_reports_channels_and_counts_every_byte(start_sim):
    sim, port = start_sim(channels=6, speed=3, acceleration=4)
    port.write(b"\x00\x01" + p.encode_set_target(2, 7000))
    assert 6000 <= position(port, 2) < 7000
    status, content_type, state = http(sim, "GET", "/state")
    assert (status, content_type) == (200, "application/json")
    assert state["device"] == sim.device_path and state["link"] is None
    assert state["bytes_received"] == 2 + 4 + 2
    assert state["commands_received"] == 2
    assert state["commands_by_name"] == {"set_target": 1, "get_position": 1}
    assert state["errors"] == ErrorBits.SERIAL_PROTOCOL_ERROR
    assert len(state["channels"]) == 6
    channel = state["channels"][2]
    assert channel["target_qus"] == 7000 and channel["moving"] is True
    assert (channel["speed"], channel["acceleration"]) == (3, 4)


def test_targets_lists_every_target_a_channel_was_set_to_in_order(start_sim):
    sim, port = start_sim(channels=6)
    port.write(p.encode_set_target(1, 5000) + p.encode_set_target(1, 7000))
    port.write(p.encode_set_multiple_targets(0, [4000, 5000]) + p.encode_set_target(3, 6400))
    position(port, 3)  # its reply comes after every command above ran
    assert http(sim, "GET", "/targets/1")[2] == {"channel": 1, "targets": [5000, 7000, 5000]}
    assert http(sim, "GET", "/targets/0")[2]["targets"] == [4000]
    assert http(sim, "GET", "/targets/5")[2] == {"channel": 5, "targets": []}
    assert http(sim, "GET", "/targets/x")[0] == 404


# --- the command line --------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LineReader:
    """Lines from a child's stdout with a deadline (select on the raw fd, own buffer)."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.fd = process.stdout.fileno()
        self.buffer = b""

    def read_line(self, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(0, remaining))
            if not ready:
                pytest.fail(f"simulator printed no full line in {timeout} s: {self.buffer!r}")
            chunk = os.read(self.fd, 4096)
            if not chunk:
                pytest.fail(f"simulator closed stdout; got {self.buffer!r}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()


def test_cli_prints_the_device_first_and_exits_cleanly_on_sigterm(tmp_path):
    link = tmp_path / "maestro"
    port_number = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.servo.simulator",
            "--speed",
            "0",
            "--link",
            str(link),
            "--control-port",
            str(port_number),
            "--channels",
            "6",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    lines = LineReader(process)
    try:
        first = lines.read_line()
        assert first.startswith("device: /dev/")
        device = first.removeprefix("device: ")
        assert lines.read_line() == f"control: http://127.0.0.1:{port_number}"
        assert os.readlink(link) == device
        with serial.Serial(device, baudrate=115200, timeout=1) as port:
            port.write(p.encode_set_target(5, 4000, device=12))
            settle(port)
            assert position(port, 5) == 4000
        with urllib.request.urlopen(f"http://127.0.0.1:{port_number}/state", timeout=5) as response:
            assert json.load(response)["commands_received"] >= 3
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert not link.exists() and not link.is_symlink()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()


def test_cli_rejects_bad_flags_with_a_message():
    result = subprocess.run(
        [sys.executable, "-m", "services.servo.simulator", "--channels", "3"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 2
    assert "channels must be in 6..24, got 3" in result.stderr
