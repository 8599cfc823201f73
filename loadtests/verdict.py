"""Judging a locust run against its profile's thresholds, from locust's own CSV."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from loadtests.profiles import Profile

AGGREGATE = "Aggregated"


@dataclass(frozen=True)
class RouteStats:
    name: str
    requests: int
    failures: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    rps: float

    @property
    def error_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Check:
    route: str
    limit_name: str
    limit: float
    actual: float | None

    @property
    def passed(self) -> bool:
        if self.actual is None:
            return False  # a route with a threshold must have been exercised
        if self.limit_name.startswith("min_"):
            return self.actual >= self.limit
        return self.actual <= self.limit

    def describe(self) -> str:
        if self.actual is None:
            return f"{self.route}: {self.limit_name} {self.limit} - no requests were made"
        verb = "at least" if self.limit_name.startswith("min_") else "at most"
        state = "ok" if self.passed else f"BROKEN by {abs(self.actual - self.limit):.4g}"
        return (
            f"{self.route}: {self.limit_name} = {self.actual:.4g} "
            f"(must be {verb} {self.limit}) {state}"
        )


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0  # locust writes "N/A" for percentiles of routes without requests


def read_stats(stats_csv: Path) -> dict[str, RouteStats]:
    stats = {}
    with stats_csv.open() as handle:
        for row in csv.DictReader(handle):
            name = row["Name"] if row["Type"] in ("", None) else f"{row['Type']} {row['Name']}"
            if row["Name"] == AGGREGATE:
                name = "all"
            stats[name] = RouteStats(
                name=name,
                requests=int(row["Request Count"]),
                failures=int(row["Failure Count"]),
                p50_ms=_number(row["50%"]),
                p95_ms=_number(row["95%"]),
                p99_ms=_number(row["99%"]),
                rps=_number(row["Requests/s"]),
            )
    return stats


def _actual(stats: RouteStats | None, limit_name: str) -> float | None:
    if stats is None or stats.requests == 0:
        return None
    return {
        "max_error_ratio": stats.error_ratio,
        "max_p95_ms": stats.p95_ms,
        "max_p99_ms": stats.p99_ms,
        "min_rps": stats.rps,
    }[limit_name]


def judge(profile: Profile, stats: dict[str, RouteStats]) -> list[Check]:
    return [
        Check(route, limit_name, float(limit), _actual(stats.get(route), limit_name))
        for route, limits in profile.thresholds.items()
        for limit_name, limit in limits.items()
    ]


def summary_markdown(profile: Profile, stats: dict[str, RouteStats], checks: list[Check]) -> str:
    verdict = "PASSED" if all(check.passed for check in checks) else "FAILED"
    lines = [
        f"# Load run: {profile.name}: {verdict}",
        "",
        profile.description,
        "",
        "| route | requests | failures | error ratio | p50 ms | p95 ms | p99 ms | req/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in sorted(stats.values(), key=lambda s: (s.name == "all", s.name)):
        lines.append(
            f"| {s.name} | {s.requests} | {s.failures} | {s.error_ratio:.4f} | "
            f"{s.p50_ms:.0f} | {s.p95_ms:.0f} | {s.p99_ms:.0f} | {s.rps:.2f} |"
        )
    lines += ["", "## Thresholds", ""]
    lines += [f"- {'✅' if c.passed else '❌'} {c.describe()}" for c in checks]
    return "\n".join(lines) + "\n"
