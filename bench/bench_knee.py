"""The knee of the baseline mix: the request rate at which p99 through the gateway
crosses 100 ms, found with the locust ``ramp`` profile against a fresh stack.

Each step of the ramp holds a user count for 20 s; per step we take the median of
locust's per-second history (requests/s, and the p99 of its sliding window) over the
step's second half, when the step has settled.
"""

from __future__ import annotations

import csv
from pathlib import Path

from bench.report import BenchContext, Section, median
from loadtests.__main__ import run as run_load
from loadtests.profiles import PROFILES_FILE, get_profile
from stack.ephemeral import ephemeral_stack

KNEE_P99_MS = 100.0


def steps(history: Path) -> list[tuple[int, float, float]]:
    """(users, median req/s, median p99 ms) for each user count the run held."""
    by_users: dict[int, list[tuple[float, float]]] = {}
    with history.open() as handle:
        for row in csv.DictReader(handle):
            if row["Name"] != "Aggregated" or row["99%"] in ("N/A", ""):
                continue
            users = int(row["User Count"])
            by_users.setdefault(users, []).append((float(row["Requests/s"]), float(row["99%"])))
    result = []
    for users, points in sorted(by_users.items()):
        settled = points[len(points) // 2 :]
        if len(settled) >= 3:
            result.append((users, median([p[0] for p in settled]), median([p[1] for p in settled])))
    return result


def run(ctx: BenchContext) -> Section:
    profile = get_profile("ramp")
    with ephemeral_stack(ctx.work_dir / "knee-run") as stack:
        ctx.say(f"locust ramp profile for {profile.duration_s:.0f}s")
        results = ctx.work_dir / "knee-results"
        run_load("ramp", stack.url("gateway"), results, PROFILES_FILE)
    (history,) = results.glob("*-ramp/locust_stats_history.csv")
    table = steps(history)
    rows: list[list[object]] = [
        [users, f"{rps:.1f}", f"{p99:.0f}", "over" if p99 > KNEE_P99_MS else ""]
        for users, rps, p99 in table
    ]
    crossed = next(((u, r) for u, r, p in table if p > KNEE_P99_MS), None)
    below = [(u, r) for u, r, p in table if p <= KNEE_P99_MS]
    if crossed and below:
        knee = (
            f"p99 crosses {KNEE_P99_MS:.0f} ms between {below[-1][1]:.0f} and "
            f"{crossed[1]:.0f} req/s"
        )
    elif crossed:
        knee = f"p99 is over {KNEE_P99_MS:.0f} ms from the first step ({crossed[1]:.0f} req/s)"
    else:
        top = table[-1][1] if table else 0.0
        knee = f"p99 stayed under {KNEE_P99_MS:.0f} ms up to {top:.0f} req/s (the ramp's top)"
    return Section(
        "Knee of the baseline mix (locust ramp through the gateway)",
        ["users", "req/s", "p99 ms", "p99 > 100 ms"],
        rows,
        [
            f"knee: {knee}.",
            "the load-test users of loadtests/locustfile.py (operators, commanders, telemetry "
            "producers) against a fresh stack with tracing on; locust runs on the same 2 cores, "
            "so the knee is the whole machine's, load generator included.",
            "per step: medians over the second half of the step of locust's per-second history.",
        ],
    )
