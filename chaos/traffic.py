"""Background traffic through the gateway during an experiment, and what it saw.

Chaos Toolkit runs Python activities in one process, so an action can start a
traffic loop here and later probes can read what it recorded. Each route (named in
:mod:`chaos.routes`) gets one thread sending at a fixed rate; every answer is kept
with its time, status, latency and the headers a probe judges (``Retry-After``,
``Warning``). Marks (``fault``, ``heal``, ...) cut the run into windows.

Commands and telemetry batches are remembered so that, afterwards, a probe can prove
no command reached the device twice and no accepted sample was lost.

A bystander runs beside the stack: a trivial HTTP server in a process of its own on
loopback, asked at the same pace as every route. It shares the machine, not the stack, so
what happens to its latency is what the machine's load (other jobs, a CPU hog) did over
the same seconds; the probes take that out of their ratios.

Loops are bounded: each stops after ``duration_s`` by itself; traffic goes only to
the gateway URL given (the stack's, on loopback) and to the bystander (loopback).
"""

from __future__ import annotations

import itertools
import json
import math
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import urllib3

from chaos import routes as catalogue

_pool = urllib3.PoolManager(maxsize=64, retries=False)
KEPT_HEADERS = ("Retry-After", "Warning", "Age")
IN_FLIGHT_GRACE_S = 1.0  # a judged window ends this long before now
MAX_IN_FLIGHT = 64  # per route: beyond it, sends queue (each is bounded by its timeout)
WARMUP_S = 3.0  # traffic before the baseline starts
BYSTANDER = "bystander"


@dataclass(frozen=True)
class Answer:
    route: str
    at: float  # time.time() when the request was sent
    status: int  # 0: no answer (connection error or client timeout)
    latency_ms: float
    headers: dict[str, str]
    problem: str | None  # the problem+json type's last segment, for error answers
    stale: bool  # a 2xx reading marked ``"stale": true`` (a fallback, not a fresh answer)


@dataclass
class Traffic:
    answers: list[Answer] = field(default_factory=list)
    pending: dict[int, tuple[str, float]] = field(default_factory=dict)  # id -> (route, sent at)
    marks: dict[str, float] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    # One count per kind of body: command angles and sample timestamps never repeat.
    sequences: dict[str, itertools.count] = field(default_factory=dict)
    # What reached the gateway, for the after-the-fact checks.
    commands: list[tuple[float, int]] = field(default_factory=list)  # (angle, status)
    accepted_ts: list[float] = field(default_factory=list)  # samples answered 202
    base_ts: float = field(default_factory=lambda: float(int(time.time())))
    bystander: subprocess.Popen | None = None
    bystander_dir: tempfile.TemporaryDirectory | None = None


_traffic = Traffic()
_tickets = itertools.count()  # names each request while it is in flight


def current() -> Traffic:
    return _traffic


def _body(route: dict[str, Any]) -> Any:
    kind = route.get("kind")
    if kind is None:
        return None
    sequence = next(_traffic.sequences.setdefault(kind, itertools.count()))
    if kind == "command":
        return catalogue.command_body(sequence)
    return catalogue.samples_body(_traffic.base_ts, sequence)


def _read(reply: urllib3.BaseHTTPResponse) -> tuple[str | None, bool]:
    """(problem type slug, stale flag) of a JSON answer."""
    if "json" not in reply.headers.get("Content-Type", ""):
        return None, False
    try:
        body = json.loads(reply.data)
    except ValueError:
        return None, False
    if not isinstance(body, dict):
        return None, False
    if reply.status >= 400:
        return str(body.get("type", "")).rsplit("/", 1)[-1] or None, False
    return None, body.get("stale") is True


def send(gateway_url: str, api_key: str, route: dict[str, Any], timeout_s: float = 10.0) -> Answer:
    """One request of ``route``; its answer is recorded and returned."""
    body = _body(route)
    headers = {"Authorization": f"Bearer {api_key}", "User-Agent": "servoscope-chaos"}
    if body is not None:
        headers["Content-Type"] = "application/json"
        headers["Idempotency-Key"] = uuid.uuid4().hex
    sent_at = time.time()
    ticket = next(_tickets)
    _traffic.pending[ticket] = (route["name"], sent_at)
    started = time.monotonic()
    try:
        reply = _pool.request(
            route["method"],
            route.get("url") or gateway_url + route["path"],
            body=None if body is None else json.dumps(body).encode(),
            headers=headers,
            timeout=urllib3.Timeout(total=timeout_s),
        )
        status = reply.status
        kept = {name: reply.headers[name] for name in KEPT_HEADERS if name in reply.headers}
        problem, stale = _read(reply)
    except urllib3.exceptions.HTTPError:
        status, kept, problem, stale = 0, {}, None, False
    latency = (time.monotonic() - started) * 1000
    answer = Answer(route["name"], sent_at, status, latency, kept, problem, stale)
    _traffic.answers.append(answer)
    _traffic.pending.pop(ticket, None)
    if route.get("kind") == "command":
        _traffic.commands.append((body["angle"], status))
    elif route.get("kind") == "samples" and status == 202:
        _traffic.accepted_ts.extend(sample["ts"] for sample in body)
    return answer


def _loop(gateway_url: str, api_key: str, route: dict[str, Any], rate: float, until: float) -> None:
    """Open loop: requests start on schedule whether or not earlier ones answered, as
    independent clients would send them, so a slow route does not slow its own load."""
    period = 1.0 / rate
    next_at = time.monotonic()
    with ThreadPoolExecutor(max_workers=MAX_IN_FLIGHT, thread_name_prefix=route["name"]) as pool:
        while not _traffic.stop.is_set() and time.monotonic() < until:
            pool.submit(send, gateway_url, api_key, route)
            next_at += period
            _traffic.stop.wait(max(0.0, next_at - time.monotonic()))


def start_traffic(
    gateway_url: str,
    api_key: str,
    routes: list[str],
    rate_per_route: float,
    duration_s: float,
    warmup_s: float = WARMUP_S,
) -> int:
    """Start one sender per named route; each stops by itself after ``duration_s``.
    The ``start`` mark (where baselines begin) comes after ``warmup_s``: the first
    requests open connections and fill caches on both sides, and judging them would
    compare a cold start with a warm fault.

    What earlier probes sent stays recorded: the command angles keep counting up and
    their answers count in the after-the-fact checks."""
    stop_traffic()
    _traffic.stop = threading.Event()
    _traffic.threads = []
    until = time.monotonic() + duration_s
    bystander = _start_bystander(duration_s)
    for route in [*catalogue.lookup(routes), bystander]:
        thread = threading.Thread(
            target=_loop,
            args=(gateway_url, api_key, route, rate_per_route, until),
            name=f"traffic-{route['name']}",
            daemon=True,
        )
        thread.start()
        _traffic.threads.append(thread)
    mark("start", settle_s=warmup_s)
    return len(routes)


def _start_bystander(duration_s: float) -> dict[str, Any]:
    """A trivial HTTP server in its own process (ending by itself after the traffic), and
    the route that asks it; it waits until the server accepts connections."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _traffic.bystander_dir = tempfile.TemporaryDirectory(prefix="chaos-bystander-")
    _traffic.bystander = subprocess.Popen(
        [
            *("timeout", str(int(duration_s + 30))),
            *(sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"),
            *("--directory", _traffic.bystander_dir.name),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as client:
            if client.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    return {"name": BYSTANDER, "method": "GET", "path": "/", "url": f"http://127.0.0.1:{port}/"}


def mark(label: str, settle_s: float = 0.0) -> float:
    """Name this moment (after waiting ``settle_s``), e.g. ``fault`` when a fault begins."""
    time.sleep(settle_s)
    _traffic.marks[label] = time.time()
    return _traffic.marks[label]


def stop_traffic() -> int:
    """Stop every sender (idempotent: a rollback may call it again); answers kept."""
    _traffic.stop.set()
    for thread in _traffic.threads:
        thread.join(timeout=15)
    if _traffic.bystander is not None:
        _traffic.bystander.terminate()  # by its pid: the `timeout` wrapping the server
        _traffic.bystander.wait(timeout=10)
        _traffic.bystander = None
    if _traffic.bystander_dir is not None:
        _traffic.bystander_dir.cleanup()
        _traffic.bystander_dir = None
    return len(_traffic.answers)


def window(route: str, since: str | float, until: str | float | None = None) -> list[Answer]:
    """Requests of ``route`` sent between two marks (or times). Up to now, a request
    still without an answer counts as failed (status 0) with the time it has waited so
    far, so a hung route cannot look healthy; the last ``IN_FLIGHT_GRACE_S`` are left
    out, as their answers may still be on their way."""
    start = _traffic.marks[since] if isinstance(since, str) else since
    if until is not None:
        end = _traffic.marks[until] if isinstance(until, str) else until
        return [a for a in list(_traffic.answers) if a.route == route and start <= a.at < end]
    now = time.time()
    end = now - IN_FLIGHT_GRACE_S
    answered = [a for a in list(_traffic.answers) if a.route == route and start <= a.at < end]
    waiting = [
        Answer(route, at, 0, (now - at) * 1000, {}, None, False)
        for name, at in list(_traffic.pending.values())
        if name == route and start <= at < end
    ]
    return answered + waiting


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def figures(answers: list[Answer]) -> dict[str, float]:
    ok = [a for a in answers if 200 <= a.status < 300]
    latencies = [a.latency_ms for a in answers]
    return {
        "requests": len(answers),
        "success_ratio": round(len(ok) / len(answers), 4) if answers else math.nan,
        "p95_ms": round(percentile(latencies, 95), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(max(latencies), 2) if latencies else math.nan,
    }
