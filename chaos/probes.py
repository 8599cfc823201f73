"""Chaos Toolkit probes: the hypotheses, each with its numbers.

Two kinds:

- steady-state probes (``routes_succeed``, ``prometheus_value``, ``commands_applied_twice``,
  ``samples_lost``) return a number the experiment's hypothesis holds a tolerance against,
  before the fault and after it;
- during-fault probes (``isolation``, ``fails_fast``, ``recovery``) judge the background
  traffic of :mod:`chaos.traffic` and raise :class:`ActivityFailed` with the figures
  when the hypothesis does not hold, so the journal records a failed activity and its
  reason; otherwise they return the figures.
"""

from __future__ import annotations

import json
import math
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from chaoslib.exceptions import ActivityFailed

from chaos import routes as catalogue
from chaos import traffic
from servoscope import streams


def _get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        return json.loads(reply.read())


# --- steady state -------------------------------------------------------------


def routes_succeed(
    gateway_url: str, api_key: str, routes: list[str], seconds: float = 2.0, rate: float = 10.0
) -> float:
    """The lowest success ratio over ``routes``, each asked ``rate`` times a second for
    ``seconds`` (the background traffic's pace, so a rate limit sized for it holds)."""

    def ask(route: dict[str, Any]) -> float:
        answers = []
        for _ in range(int(seconds * rate)):
            answers.append(traffic.send(gateway_url, api_key, route))
            time.sleep(1 / rate)
        return traffic.figures(answers)["success_ratio"]

    with ThreadPoolExecutor(max_workers=len(routes)) as pool:
        return min(pool.map(ask, catalogue.lookup(routes)))


def prometheus_value(prometheus_url: str, query: str, default: float = math.nan) -> float:
    """The value of an instant PromQL query that yields one series (``default`` if none)."""
    url = f"{prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    result = _get_json(url)["data"]["result"]
    if not result:
        return default
    return float(result[0]["value"][1])


def _poll_prometheus(
    prometheus_url: str,
    query: str,
    done: Callable[[float], bool],
    timeout_s: float,
    default: float = math.nan,
) -> tuple[float, float, bool]:
    """Poll ``query`` until ``done(value)`` or ``timeout_s``: (last value, seconds, done).
    Gauges are scraped every 2 s, so they lag what they measure."""
    started = time.monotonic()
    while True:
        value = prometheus_value(prometheus_url, query, default)
        elapsed = time.monotonic() - started
        if done(value) or elapsed >= timeout_s:
            return value, round(elapsed, 2), done(value)
        time.sleep(0.5)


def prometheus_settles(
    prometheus_url: str, query: str, expected: float, timeout_s: float = 10.0
) -> float:
    """``query``'s value once it equals ``expected``, or its last value after ``timeout_s``."""
    value, _, _ = _poll_prometheus(prometheus_url, query, lambda v: v == expected, timeout_s)
    return value


def await_prometheus(
    prometheus_url: str, query: str, expected: float, timeout_s: float = 15.0
) -> float:
    """Seconds until ``query`` equals ``expected``; raises after ``timeout_s``."""
    value, seconds, met = _poll_prometheus(
        prometheus_url, query, lambda v: v == expected, timeout_s
    )
    if not met:
        raise ActivityFailed(f"{query} stayed {value}, not {expected}, for {timeout_s}s")
    return seconds


def await_prometheus_above(
    prometheus_url: str, query: str, threshold: float, timeout_s: float = 15.0
) -> float:
    """``query``'s value once it exceeds ``threshold``; raises if it does not in time."""
    # No series yet means nothing counted: 0.
    value, _, met = _poll_prometheus(
        prometheus_url, query, lambda v: v > threshold, timeout_s, default=0.0
    )
    if not met:
        raise ActivityFailed(f"{query} = {value}, not above {threshold} within {timeout_s}s")
    return value


def commands_applied_twice(simulator_url: str) -> int:
    """Targets the device received more than once on the command channel.

    Every set-position the traffic sends carries a new angle and a new Idempotency-Key,
    so a repeated target is a command applied twice (a retry that was not deduplicated).
    """
    targets = _get_json(f"{simulator_url}/targets/{catalogue.COMMAND_CHANNEL}")["targets"]
    return len(targets) - len(set(targets))


def samples_lost(telemetry_url: str) -> int:
    """Samples the logger answered 202 for that it no longer has."""
    accepted = set(traffic.current().accepted_ts)
    if not accepted:
        return 0
    stored: set[float] = set()
    cursor = "0"
    while cursor is not None:
        query = urllib.parse.urlencode(
            {"channel": catalogue.SAMPLE_CHANNEL, "limit": 1000, "cursor": cursor}
        )
        page = _get_json(f"{telemetry_url}/samples?{query}")
        stored.update(sample["ts"] for sample in page["samples"])
        cursor = page["next_cursor"]
    return len(accepted - stored)


def _stored_samples(telemetry_url: str) -> list[dict[str, Any]]:
    stored: list[dict[str, Any]] = []
    cursor: str | None = "0"
    while cursor is not None:
        query = urllib.parse.urlencode({"limit": 1000, "cursor": cursor})
        page = _get_json(f"{telemetry_url}/samples?{query}")
        stored += page["samples"]
        cursor = page["next_cursor"]
    return stored


def _entry_key(entry_id: str) -> tuple[int, int]:
    ms, seq = entry_id.split("-", 1)
    return int(ms), int(seq)


def stream_samples_lost(telemetry_url: str, redis_port: int) -> dict[str, int]:
    """What the async path lost since the logger first stored a sample, counted three
    ways (all must be 0):

    - ``gaps``: holes in a stored sequence: every producer numbers each channel's
      samples one by one, so each (producer, channel) must be stored without a hole;
    - ``duplicates``: a (producer, channel, seq) stored twice;
    - ``unstored``: samples published to the stream after the first one stored that the
      logger never stored (what a restarted publisher had already published counts
      here). A sample is known by (producer, channel, seq), not by its entry id: a
      publisher that lost Redis's answer sends its batch again under new entry ids, and
      the store keeps the sample once.
    """
    stored = _stored_samples(telemetry_url)
    seqs: dict[tuple[str, int], list[int]] = {}
    for sample in stored:
        if sample.get("producer"):
            seqs.setdefault((sample["producer"], sample["channel"]), []).append(sample["seq"])
    gaps = sum(max(v) - min(v) + 1 - len(set(v)) for v in seqs.values())
    duplicates = sum(len(v) - len(set(v)) for v in seqs.values())
    stored_keys = {(s["producer"], s["channel"], s["seq"]) for s in stored if s.get("entry_id")}
    first = min((_entry_key(s["entry_id"]) for s in stored if s.get("entry_id")), default=(0, 0))
    client = streams.connect(f"redis://127.0.0.1:{int(redis_port)}/0", 5.0)
    published = set()
    for entry_id, fields in client.xrange(streams.SAMPLES):
        if _entry_key(entry_id) >= first:
            data = json.loads(fields["data"])
            published.add((data["producer"], data["channel"], data["seq"]))
    return {
        "gaps": gaps,
        "duplicates": duplicates,
        "unstored": len(published - stored_keys),
        "stored": len(stored),
        "producers": len({producer for producer, _ in seqs}),
    }


def samples_lost_through_stream(telemetry_url: str, redis_port: int, settle_s: float = 10) -> int:
    """:func:`stream_samples_lost` as one number for a steady-state tolerance of 0, once
    it settles: the entries published in the last moment may still be on their way."""
    deadline = time.monotonic() + settle_s
    while True:
        lost = stream_samples_lost(telemetry_url, redis_port)
        total = lost["gaps"] + lost["duplicates"] + lost["unstored"]
        if total == 0 or time.monotonic() > deadline:
            return total
        time.sleep(1.0)


def _samples_backlog(redis_port: int) -> streams.StreamBacklog:
    client = streams.connect(f"redis://127.0.0.1:{int(redis_port)}/0", 5.0)
    return streams.backlog(client, streams.SAMPLES)


def backlog_rises(redis_port: int, seconds: float) -> dict[str, float]:
    """Wait ``seconds`` of a consumer outage, watching the samples' backlog: it must rise
    (samples keep being published, and wait in the stream for a consumer)."""
    first = _samples_backlog(redis_port)
    time.sleep(float(seconds))
    last = _samples_backlog(redis_port)
    figures = {
        "backlog_before": first.lag + first.pending,
        "backlog_after": last.lag + last.pending,
        "oldest_age_s": round(last.oldest_age_s, 1),
    }
    if figures["backlog_after"] <= figures["backlog_before"]:
        raise ActivityFailed(f"the backlog did not rise while no consumer ran: {figures}")
    return figures


def backlog_drains(redis_port: int, within_s: float) -> float:
    """Seconds until the samples' backlog is consumed and acknowledged (lag and pending 0)."""
    started = time.monotonic()
    while True:
        backlog = _samples_backlog(redis_port)
        if backlog.lag == 0 and backlog.pending == 0:
            return round(time.monotonic() - started, 2)
        if time.monotonic() - started > float(within_s):
            raise ActivityFailed(f"backlog not drained within {within_s}s: {backlog}")
        time.sleep(0.5)


# --- during the fault -----------------------------------------------------------


def _fast_failure(answer: traffic.Answer) -> bool:
    """An honest refusal: a 503 with ``Retry-After`` (an open breaker, a full bulkhead,
    or the servo controller saying its device is unavailable), or a fallback: the
    gateway's last known answer (``Warning``) or a reading marked ``"stale": true``."""
    if answer.status == 503:
        return "Retry-After" in answer.headers
    return 200 <= answer.status < 300 and ("Warning" in answer.headers or answer.stale)


def _opened(answer: traffic.Answer) -> bool:
    """The gateway's breaker refused the call, or the service refused for its device."""
    if answer.status == 503:
        return answer.problem in ("breaker-open", "device-unavailable")
    return _fast_failure(answer)


def await_fast_failure(
    broken: list[str], timeout_s: float = 10.0, drain_s: float = 0.0
) -> float | None:
    """Mark ``open`` once the protection engaged on every broken route: the breaker
    refused, the fallback answered, or the service said its device is unavailable.

    Calls admitted before that may still hold their bulkhead slots until their attempt
    timeout, so the mark waits ``drain_s`` (the attempt timeout) more. Without the
    protection nothing engages: the mark is set at the timeout, None is returned, and
    ``fails_fast`` then judges what the routes really did.
    """
    fault = traffic.current().marks["fault"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(any(map(_opened, traffic.window(r, "fault"))) for r in broken):
            engaged = round(time.time() - fault, 2)
            traffic.mark("open", settle_s=drain_s)
            return engaged
        time.sleep(0.1)
    traffic.mark("open")
    return None


def breach(figure: str, text: str) -> str:
    """One broken figure of a probe, tagged so that a declared known failure can name
    exactly the figure it tolerates (:func:`chaos.runner.only_known_failure`)."""
    return f"[{figure}] {text}"


SCHEDULER_NOISE_MS = 20.0


def _machine_slowdown(since: str) -> float:
    """How much slower the bystander (a trivial server beside the stack, see
    :mod:`chaos.traffic`) answered since ``since`` than in the baseline: what the
    machine's load alone did to every process over those seconds (at least 1)."""
    before = traffic.figures(traffic.window(traffic.BYSTANDER, "start", "fault"))["p95_ms"]
    during = traffic.figures(traffic.window(traffic.BYSTANDER, since))["p95_ms"]
    if not (before > 0 and during > 0):  # NaN when it has no answers: nothing to take out
        return 1.0
    return max(1.0, during / before)


def isolation(
    unaffected: list[str],
    degraded: list[str] | None = None,
    min_success: float = 0.995,
    max_p95_ratio: float = 1.5,
    since: str = "fault",
) -> dict[str, Any]:
    """Routes that don't need the broken part keep ``min_success`` each, and their p95
    stays within ``max_p95_ratio`` x their p95 before the fault: the same run's own
    baseline, measured after the traffic's warm-up (:func:`chaos.traffic.start_traffic`)
    under whatever else loads the machine, pooled over those routes (one route's answers
    in a window make too noisy a p95 on their own); ``degraded`` routes (which answer
    without the broken part, e.g. device-state) keep ``min_success`` only. Each broken
    figure is tagged ``[success]`` or ``[p95]``; per-route figures are in the report."""
    report: dict[str, Any] = {}
    broken: list[str] = []
    for route in [*unaffected, *(degraded or [])]:
        before = traffic.figures(traffic.window(route, "start", "fault"))
        during = traffic.figures(traffic.window(route, since))
        report[route] = {"baseline": before, "during": during}
        if not during["requests"]:
            broken.append(breach("success", f"{route}: no answers during the fault"))
        elif during["success_ratio"] < min_success:
            broken.append(
                breach("success", f"{route}: {during['success_ratio']:.2%} ok < {min_success:.1%}")
            )
    pooled_before = [a for r in unaffected for a in traffic.window(r, "start", "fault")]
    pooled_during = [a for r in unaffected for a in traffic.window(r, since)]
    before_p95 = traffic.figures(pooled_before)["p95_ms"]
    during_p95 = traffic.figures(pooled_during)["p95_ms"]
    ratio = during_p95 / before_p95 if before_p95 else math.inf
    machine = _machine_slowdown(since)
    # Below a scheduling quantum the ratio of two small p95s (20 vs 30 ms) measures the
    # scheduler of a shared 2-core machine, not the fault: that much is not judged.
    beyond_noise = max(during_p95 - SCHEDULER_NOISE_MS, 0.0)
    judged = beyond_noise / before_p95 / machine if before_p95 else ratio
    report["unaffected_p95"] = {
        "baseline_ms": before_p95,
        "during_ms": during_p95,
        "ratio": round(ratio, 2),
        "machine_slowdown": round(machine, 2),
        "judged_ratio": round(judged, 2),
    }
    if judged > max_p95_ratio:
        broken.append(
            breach(
                "p95",
                f"{', '.join(unaffected)}: {during_p95} ms = {ratio:.2f} x baseline "
                f"{before_p95} ms, {judged:.2f}x beyond the machine's own slowdown "
                f"({machine:.2f}x) and {SCHEDULER_NOISE_MS:g} ms of scheduling > {max_p95_ratio}x",
            )
        )
    if broken:
        raise ActivityFailed(f"isolation broken: {'; '.join(broken)} -- {json.dumps(report)}")
    return report


def fails_fast(
    broken: list[str],
    deadline_s: float,
    attempt_timeout_s: float,
    breaker_reset_s: float | None = None,
) -> dict[str, Any]:
    """While the fault lasts, routes that need the broken part answer every request
    within their deadline, and once the protection engaged (mark ``open``) they
    refuse fast and honestly: each answer a 503 with ``Retry-After`` or a fallback, and
    p99 <= 1/10 of ``attempt_timeout_s`` — the wait the protection saves each request
    (without it every call sits out its attempt timeout, then its retries). Judged
    against that rather than a fixed figure, the verdict means the same on an idle
    machine and on one whose cores other jobs keep busy; where the load is such that even
    healthy routes answer slower than that, a refusal must not be slower than their p99
    over the same seconds plus ``SCHEDULER_NOISE_MS``, and in no case slower than half the
    attempt timeout (without the protection, it waits the timeout and more).

    Every ``breaker_reset_s`` the breaker half-opens and lets one request through to
    learn whether the upstream is back; that probe waits like any call to the sick
    upstream. Those requests (one per reset period) are not the open breaker's
    answers and are left out, the slowest first."""
    # A refusal saves the attempt timeout: it must cost at most a tenth of it. On a machine
    # so loaded that no answer at all comes back that fast, it must still be no slower
    # than a healthy answer from the same stack in the same seconds, give or take the
    # scheduling noise isolation allows too (a route's p99 over ~50 refusals is its
    # slowest one, set beside the p99 of a few hundred healthy answers) — and never
    # slower than half the timeout, which every unprotected call waits in full.
    healthy = [
        a
        for name in {a.route for a in traffic.current().answers}
        if name not in broken and name != traffic.BYSTANDER
        for a in traffic.window(name, "open")
        if 200 <= a.status < 300
    ]
    healthy_p99 = traffic.figures(healthy)["p99_ms"] if healthy else 0.0
    max_p99_ms = min(
        max(attempt_timeout_s * 1000 / 10, healthy_p99 + SCHEDULER_NOISE_MS),
        attempt_timeout_s * 1000 / 2,
    )
    report: dict[str, Any] = {"max_p99_ms": max_p99_ms, "healthy_p99_ms": healthy_p99}
    problems: list[str] = []
    for route in broken:
        whole = traffic.window(route, "fault")
        opened = traffic.window(route, "open")
        if breaker_reset_s and opened:
            span_s = opened[-1].at - opened[0].at
            probes = math.ceil(span_s / breaker_reset_s)
            opened = sorted(opened, key=lambda a: a.latency_ms)[: len(opened) - probes]
        figures = traffic.figures(opened)
        dishonest = [a for a in opened if not _fast_failure(a)]
        slowest = max((a.latency_ms for a in whole), default=0.0)
        statuses = sorted({a.status for a in dishonest})
        report[route] = {**figures, "dishonest": len(dishonest), "slowest_ms": round(slowest)}
        if not opened:
            problems.append(breach("engaged", f"{route}: no requests since it engaged"))
            continue
        if slowest > deadline_s * 1000 + 250:
            problems.append(
                breach("deadline", f"{route}: a request took {slowest:.0f} ms, past {deadline_s}s")
            )
        if figures["p99_ms"] > max_p99_ms:
            problems.append(breach("p99", f"{route}: {figures['p99_ms']} ms > {max_p99_ms:g} ms"))
        if dishonest:
            problems.append(
                breach(
                    "honest",
                    f"{route}: {len(dishonest)} of {len(opened)} answers neither 503 + "
                    f"Retry-After nor the fallback (statuses {statuses})",
                )
            )
    if problems:
        raise ActivityFailed(f"no fast failure: {'; '.join(problems)} -- {json.dumps(report)}")
    return report


def recovery(broken: list[str], within_s: float) -> float:
    """Seconds from ``heal`` until every broken route answered a fresh 2xx again."""
    heal = traffic.current().marks["heal"]
    deadline = time.monotonic() + within_s + 1.0
    recovered: dict[str, float] = {}
    while time.monotonic() < deadline and len(recovered) < len(broken):
        for route in broken:
            if route in recovered:
                continue
            for answer in traffic.window(route, "heal"):
                if 200 <= answer.status < 300 and not _fast_failure(answer):
                    recovered[route] = answer.at + answer.latency_ms / 1000 - heal
                    break
        time.sleep(0.1)
    missing = [route for route in broken if route not in recovered]
    slowest = max(recovered.values(), default=math.inf)
    if missing or slowest > within_s:
        raise ActivityFailed(
            f"not recovered within {within_s}s: "
            + ", ".join(f"{r} after {recovered.get(r, math.inf):.1f}s" for r in broken)
        )
    return round(slowest, 2)
