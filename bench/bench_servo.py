"""Servo controller: command round trip at the service, and serial exchange rate vs the wire.

1. Round trip (HTTP -> serial -> device -> reply): sequential requests on one
   keep-alive connection to the servo controller of an ephemeral stack (gunicorn,
   tracing into a real Jaeger, the simulator pacing its line at the configured baud).
2. Exchange rate: back-to-back Get Position exchanges against a simulator in its
   own process, compared with what the line itself allows at that baud
   (request + reply bytes x 10 bits / baud).
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.report import BenchContext, Section, median, percentile
from services.servo import protocol
from services.servo.config import ServoConfig
from services.servo.device import PySerialLink
from services.servo.lifecycle import ServoDevice
from servoscope.settings import REPO_ROOT, load
from stack.ephemeral import ephemeral_stack, wait_for

REQUESTS = 400
EXCHANGE_SECONDS = 2.0
BITS_PER_BYTE = 10


def _latencies(host: str, port: int, call: Callable[[http.client.HTTPConnection, int], int]):
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        for i in range(20):  # warm up: connection, imports, JIT-free but cache-warm paths
            call(connection, i)
        samples = []
        for i in range(REQUESTS):
            started = time.perf_counter()
            status = call(connection, i)
            samples.append(time.perf_counter() - started)
            assert status == 200, status
        return samples
    finally:
        connection.close()


def _set_position(prefix: str, headers: dict[str, str]):
    def call(connection: http.client.HTTPConnection, i: int) -> int:
        body = json.dumps({"channel": i % 6, "angle": 60.0 + (i % 2) * 60.0})
        connection.request(
            "POST",
            f"{prefix}/set-position",
            body=body,
            headers={"Content-Type": "application/json", **headers},
        )
        reply = connection.getresponse()
        reply.read()
        return reply.status

    return call


def _current_angle(prefix: str, headers: dict[str, str]):
    def call(connection: http.client.HTTPConnection, i: int) -> int:
        connection.request("GET", f"{prefix}/current-angle?channel={i % 6}", headers=headers)
        reply = connection.getresponse()
        reply.read()
        return reply.status

    return call


def round_trips(ctx: BenchContext) -> list[list[object]]:
    figures: dict[str, list[tuple[float, float]]] = {}
    with ephemeral_stack(ctx.work_dir / "servo-stack" / "run") as stack:
        servo = stack.settings
        auth = {"Authorization": "Bearer servoscope-dev-key"}
        cases = {
            "POST /set-position (service)": (servo.port("servo"), _set_position("", {})),
            "GET /current-angle (service, from the snapshot)": (
                servo.port("servo"),
                _current_angle("", {}),
            ),
            "POST /api/servo/set-position (through the gateway)": (
                servo.port("gateway"),
                _set_position("/api/servo", auth),
            ),
        }
        for repeat in range(ctx.repeats):
            ctx.say(f"round trips, repeat {repeat + 1}/{ctx.repeats}")
            for name, (port, call) in cases.items():
                samples = _latencies(servo.host, port, call)
                figures.setdefault(name, []).append(
                    (percentile(samples, 50), percentile(samples, 99))
                )
    return [
        [
            name,
            f"{median([p50 for p50, _ in runs]) * 1000:.2f}",
            f"{median([p99 for _, p99 in runs]) * 1000:.2f}",
        ]
        for name, runs in figures.items()
    ]


def _start_simulator(work: Path, baud: int) -> tuple[subprocess.Popen, str]:
    link = work / "bench-maestro"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.servo.simulator",
            "--baud",
            str(baud),
            "--link",
            str(link),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.DEVNULL,
    )
    wait_for(link.exists, timeout=10, message="the simulator's pty link")
    return process, str(link)


def _rate(exchange: Callable[[], object]) -> float:
    for _ in range(50):
        exchange()
    count = 0
    started = time.perf_counter()
    deadline = started + EXCHANGE_SECONDS
    while time.perf_counter() < deadline:
        exchange()
        count += 1
    return count / (time.perf_counter() - started)


def wire_seconds(exchange: list[tuple[int, int]], baud: int) -> float:
    """Shortest time a full-duplex line at ``baud`` needs for (request, reply) byte counts
    written together: requests arrive one after another, each reply follows its request
    and the reply before it (the same model the simulator paces by)."""
    byte_s = BITS_PER_BYTE / baud
    line_in = line_out = 0.0
    for request, reply in exchange:
        line_in += request * byte_s
        if reply:
            line_out = max(line_in, line_out) + reply * byte_s
    return max(line_in, line_out)


def exchange_rates(ctx: BenchContext, baud: int, channels: int) -> list[list[object]]:
    get_position = protocol.encode_get_position(0)
    single = 1 / wire_seconds([(2, 2)], baud)
    poll = 1 / wire_seconds([(2, 2)] * channels + [(1, 1), (1, 2)], baud)
    rows: dict[str, tuple[float, list[float]]] = {
        "Get Position, PySerialLink (the seam)": (single, []),
        "Get Position, ServoDevice.exchange (metrics, no span)": (single, []),
        f"poll: {channels} positions + moving + errors in one write": (poll, []),
    }
    names = list(rows)
    process, link_path = _start_simulator(ctx.work_dir, baud)
    try:
        config = ServoConfig(device=link_path, baud=baud, timeout_s=0.25, channel_count=channels)
        link = PySerialLink(link_path, baud)
        device = ServoDevice(config, link)
        assert device.connect(), device.last_failure  # driven from here: no device thread
        for repeat in range(ctx.repeats):
            ctx.say(f"exchange rate, repeat {repeat + 1}/{ctx.repeats}")
            rows[names[0]][1].append(_rate(lambda: link.exchange(get_position, 2, 0.25)))
            rows[names[1]][1].append(
                _rate(
                    lambda: device.exchange(
                        "get_position", get_position, 2, protocol.decode_position, traced=False
                    )
                )
            )
            rows[names[2]][1].append(_rate(device.poll_once))
        link.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
    return [
        [name, f"{median(rates):,.0f}", f"{limit:,.0f}", f"{median(rates) / limit:.0%}"]
        for name, (limit, rates) in rows.items()
    ]


def run(ctx: BenchContext) -> Section:
    settings = load()
    baud = int(settings.get("simulator", "baud"))
    channels = int(settings.sections["servo"].get("channel_count", 6))
    section = Section(
        title="Servo controller",
        headers=["what", "figure", "wire limit", "fraction of the wire"],
    )
    for name, p50, p99 in round_trips(ctx):
        section.rows.append([f"{name}: p50 / p99 ms", f"{p50} / {p99}", "", ""])
    section.rows += [
        [f"{name}: exchanges/s", rate, limit, fraction]
        for name, rate, limit, fraction in exchange_rates(ctx, baud, channels)
    ]
    section.notes += [
        f"round trips: {REQUESTS} sequential requests on one keep-alive connection per repeat, "
        f"after 20 warm-up requests; median of {ctx.repeats} repeats of each percentile; the "
        "stack traces every request into Jaeger and the poller reads the device every "
        f"{settings.sections['servo'].get('poll_period_s', 0.05)} s meanwhile.",
        "a set-position is one exchange: Set Speed + Set Acceleration + Set Target + Get Errors "
        "in one write, 13 bytes out and 2 back (about 1.3 ms of wire at 115200 baud).",
        f"exchange rate: back-to-back for {EXCHANGE_SECONDS:g} s per repeat against a simulator "
        f"in its own process pacing its replies at {baud} baud; the wire limit is "
        "baud / (bytes out + bytes in) / 10 bits for one Get Position (4 bytes: 2,880/s at "
        "115200); for the poll, whose requests and replies overlap on a full-duplex line, "
        "the time of the last reply byte (17 bytes' worth for 6 channels).",
    ]
    return section
