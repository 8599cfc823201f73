"""Telemetry logger: ingest rate by batch size, and what a saturated logger costs the servo.

1. Ingest: two senders post batches of 1, 100 and 1000 samples back to back to the
   logger of an ephemeral stack (each batch fsynced before its 202) for a few seconds;
   samples stored per second.
2. Isolation: the servo controller's set-position p99 with the logger idle, then with
   two senders keeping it saturated with 1000-sample batches, and — the control — with
   the same load on a second logger the servo does not publish to. On a 2-core machine
   load anywhere costs the servo CPU; the control shows how much of the slowdown is
   that, and how much (saturated minus control) is coupling to its own logger. The
   three measurements alternate so drift on a shared machine hits them alike.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from bench.bench_servo import _latencies, _set_position
from bench.report import BenchContext, Section, median, percentile
from servoscope.settings import REPO_ROOT
from stack.components import gunicorn_argv
from stack.ephemeral import (
    answers_ok,
    ephemeral_stack,
    free_ports,
    standalone_env,
    terminate,
    wait_for,
)

INGEST_SECONDS = 3.0
SENDERS = 2


def _batch(size: int) -> bytes:
    now = time.time()
    return json.dumps(
        [
            {"channel": i % 6, "angle": 90.0, "target_angle": 90.0, "ts": now - i * 0.01}
            for i in range(size)
        ]
    ).encode()


def _send_until(url: str, body: bytes, stop: threading.Event, counts: list[int]) -> None:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        while not stop.is_set():
            connection.request(
                "POST", "/samples", body=body, headers={"Content-Type": "application/json"}
            )
            reply = connection.getresponse()
            reply.read()
            if reply.status == 202:
                counts.append(1)
    finally:
        connection.close()


def _senders(url: str, size: int) -> tuple[threading.Event, list[threading.Thread], list[int]]:
    stop, counts = threading.Event(), []
    body = _batch(size)
    threads = [
        threading.Thread(target=_send_until, args=(url, body, stop, counts), daemon=True)
        for _ in range(SENDERS)
    ]
    for thread in threads:
        thread.start()
    return stop, threads, counts


def ingest_rate(url: str, size: int) -> float:
    stop, threads, counts = _senders(url, size)
    time.sleep(INGEST_SECONDS)
    stop.set()
    for thread in threads:
        thread.join()
    return len(counts) * size / INGEST_SECONDS


def servo_p99_ms(servo_url: str) -> float:
    parts = urlsplit(servo_url)
    samples = _latencies(parts.hostname or "127.0.0.1", parts.port or 80, _set_position("", {}))
    return percentile(samples, 99) * 1000


@contextmanager
def unrelated_logger(work: Path) -> Iterator[str]:
    """A second telemetry logger, outside the stack: load on it is only CPU load."""
    port = free_ports(1)[0]
    env = standalone_env(port, SERVOSCOPE_TELEMETRY_LOGGER_DATABASE=str(work / "control.sqlite3"))
    process = subprocess.Popen(
        gunicorn_argv("services.telemetry.app:create_app()"),
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers_ok(url + "/healthz"), 20, message="the control logger")
        yield url
    finally:
        terminate(process)


def p99_under_load(servo: str, logger: str) -> float:
    stop, threads, _counts = _senders(logger, 1000)
    time.sleep(0.5)  # let the senders fill the logger's queue
    try:
        return servo_p99_ms(servo)
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def run(ctx: BenchContext) -> Section:
    rows: list[list[object]] = []
    with ephemeral_stack(ctx.work_dir / "telemetry-run") as stack:
        logger, servo = stack.url("telemetry"), stack.url("servo")
        for size in (1, 100, 1000):
            ctx.say(f"ingest, batches of {size}")
            rate = median([ingest_rate(logger, size) for _ in range(ctx.repeats)])
            rows.append([f"ingest, batches of {size}: samples/s", f"{rate:,.0f}", ""])
        idle, saturated, control = [], [], []
        with unrelated_logger(ctx.work_dir) as other:
            for _ in range(ctx.repeats):
                ctx.say("servo p99: logger idle, saturated, and load on an unrelated logger")
                idle.append(servo_p99_ms(servo))
                saturated.append(p99_under_load(servo, logger))
                control.append(p99_under_load(servo, other))
        base = median(idle)
        for label, values in (
            ("logger idle", idle),
            ("its logger saturated", saturated),
            ("control: the same load on an unrelated logger", control),
        ):
            p99 = median(values)
            rows.append([f"servo set-position p99, {label}: ms", f"{p99:.2f}", f"{p99 / base:.2f}"])
    return Section(
        "Telemetry logger: ingest, and the servo while the logger is saturated",
        ["what", "figure", "x idle"],
        rows,
        [
            f"ingest: {SENDERS} senders posting back to back for {INGEST_SECONDS:.0f} s per "
            f"repeat on keep-alive connections; each 202 follows an fsync (WAL, "
            f"synchronous=FULL); median of {ctx.repeats} repeats.",
            "isolation: 400 sequential set-position requests straight to the servo controller "
            "(keep-alive), alternating idle, saturated and control runs; median p99 of each. "
            "The aim is a p99 within 1.10 x idle. On this 2-core machine the senders and the "
            "logger take CPU from the servo wherever they run: compare 'saturated' with the "
            "control, which loads a logger the servo never talks to.",
        ],
    )
