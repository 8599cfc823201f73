"""Background traffic through the gateway, and the probes that judge it.

Chaos Toolkit runs Python activities in its own process, so an action can start a
traffic loop here and later probes can read what it recorded. Each route gets one
thread sending at a fixed rate; every answer is kept with its time, status and
latency. Marks (``baseline``, ``fault``, ``heal``) cut the run into windows.

Loops are bounded: each stops after ``duration_s`` by itself, traffic goes only to
the gateway URL given (the stack's, on loopback).
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from dataclasses import dataclass, field

import urllib3

_pool = urllib3.PoolManager(maxsize=16, retries=False)


@dataclass(frozen=True)
class Answer:
    route: str
    at: float
    status: int  # 0: no answer (connection error or client timeout)
    latency_ms: float
    headers: dict[str, str]


@dataclass
class Traffic:
    answers: list[Answer] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)


_traffic = Traffic()


def _loop(gateway_url: str, api_key: str, route: dict, rate: float, until: float) -> None:
    period = 1.0 / rate
    name = route["name"]
    next_at = time.monotonic()
    while not _traffic.stop.is_set() and time.monotonic() < until:
        headers = {"Authorization": f"Bearer {api_key}", "User-Agent": "servoscope-chaos"}
        body = None
        if route.get("body") is not None:
            headers["Content-Type"] = "application/json"
            headers["Idempotency-Key"] = uuid.uuid4().hex
            body = json.dumps(route["body"]).encode()
        started = time.monotonic()
        try:
            reply = _pool.request(
                route.get("method", "GET"),
                gateway_url + route["path"],
                body=body,
                headers=headers,
                timeout=urllib3.Timeout(total=route.get("client_timeout_s", 10.0)),
            )
            status, reply_headers = reply.status, dict(reply.headers)
        except urllib3.exceptions.HTTPError:
            status, reply_headers = 0, {}
        latency = (time.monotonic() - started) * 1000
        _traffic.answers.append(Answer(name, time.time(), status, latency, reply_headers))
        next_at += period
        time.sleep(max(0.0, next_at - time.monotonic()))


def start_traffic(
    gateway_url: str, api_key: str, routes: list[dict], rate_per_route: float, duration_s: float
) -> int:
    """Start one sender per route; each stops by itself after ``duration_s``."""
    global _traffic
    _traffic = Traffic()
    until = time.monotonic() + duration_s
    for route in routes:
        thread = threading.Thread(
            target=_loop,
            args=(gateway_url, api_key, route, rate_per_route, until),
            name=f"traffic-{route['name']}",
            daemon=True,
        )
        thread.start()
        _traffic.threads.append(thread)
    mark("start")
    return len(routes)


def mark(label: str, settle_s: float = 0.0) -> float:
    """Name this moment (after waiting ``settle_s``), e.g. ``fault`` when a fault begins."""
    time.sleep(settle_s)
    _traffic.marks[label] = time.time()
    return _traffic.marks[label]


def stop_traffic() -> int:
    _traffic.stop.set()
    for thread in _traffic.threads:
        thread.join(timeout=15)
    return len(_traffic.answers)


def window(route: str, since: str, until: str | None = None) -> list[Answer]:
    start = _traffic.marks[since]
    end = _traffic.marks[until] if until else math.inf
    return [a for a in list(_traffic.answers) if a.route == route and start <= a.at < end]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def figures(route: str, since: str, until: str | None = None) -> dict[str, float]:
    answers = window(route, since, until)
    ok = [a for a in answers if 200 <= a.status < 300]
    return {
        "requests": len(answers),
        "success_ratio": len(ok) / len(answers) if answers else math.nan,
        "p95_ms": percentile([a.latency_ms for a in answers], 95),
        "p99_ms": percentile([a.latency_ms for a in answers], 99),
    }
