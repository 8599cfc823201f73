"""A load run's verdict: thresholds read from one file, broken ones named with the margin."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.profiles import ProfileError, get_profile, load_profiles
from loadtests.verdict import RouteStats, judge, read_stats, summary_markdown

CSV_HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
    "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%\n"
)


def test_every_shipped_profile_is_valid_and_bounded() -> None:
    profiles = load_profiles()
    assert {"smoke", "baseline", "ramp", "spike", "soak"} <= set(profiles)
    assert profiles["smoke"].duration_s <= 35
    assert all(p.duration_s <= 3600 for p in profiles.values())


def test_stages_run_in_order_then_stop() -> None:
    ramp = get_profile("ramp")
    assert ramp.stage_at(0).users == 20
    assert ramp.stage_at(45).users == 160
    assert ramp.stage_at(ramp.duration_s) is None


def test_bad_profiles_are_reported_with_their_place(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("x:\n  stages: [{users: 1}]\n")
    with pytest.raises(ProfileError, match=r"x.stages"):
        load_profiles(bad)
    bad.write_text(
        "x:\n  stages: [{duration_s: 1, users: 1, spawn_rate: 1}]\n"
        "  thresholds: {all: {max_p42_ms: 1}}\n"
    )
    with pytest.raises(ProfileError, match="unknown \\['max_p42_ms'\\]"):
        load_profiles(bad)
    with pytest.raises(ProfileError, match="choose one of"):
        get_profile("nope")


def test_locust_csv_is_read_per_route_and_aggregate(tmp_path: Path) -> None:
    stats_csv = tmp_path / "locust_stats.csv"
    stats_csv.write_text(
        CSV_HEADER
        + "POST,/api/servo/set-position,100,2,6,7,3,40,50,4.5,0.1,6,7,7,8,9,12,20,30,40,40,40\n"
        + ",Aggregated,100,2,6,7,3,40,50,4.5,0.1,6,7,7,8,9,12,20,30,40,40,40\n"
    )
    stats = read_stats(stats_csv)
    route = stats["POST /api/servo/set-position"]
    assert (route.requests, route.failures, route.p95_ms, route.p99_ms) == (100, 2, 12, 30)
    assert route.error_ratio == 0.02
    assert stats["all"].rps == 4.5


def test_broken_thresholds_name_the_route_and_margin() -> None:
    profile = get_profile("smoke")
    stats = {
        "all": RouteStats("all", 200, 10, 5, 600, 900, 3.0),
        "POST /api/servo/set-position": RouteStats("x", 50, 0, 5, 10, 20, 1.0),
        "GET /api/servo/current-angle": RouteStats("y", 100, 0, 5, 10, 20, 2.0),
    }
    checks = judge(profile, stats)
    broken = {(c.route, c.limit_name) for c in checks if not c.passed}
    assert broken == {
        ("all", "max_error_ratio"),  # 5 % > 1 %
        ("all", "max_p95_ms"),  # 600 > 500
        ("POST /api/telemetry/samples", "max_error_ratio"),  # never exercised
        ("POST /api/telemetry/samples", "max_p95_ms"),
        ("GET /api/state", "max_error_ratio"),
        ("GET /api/state", "max_p95_ms"),
    }
    p95 = next(c for c in checks if c.route == "all" and c.limit_name == "max_p95_ms")
    assert "BROKEN by 100" in p95.describe()
    summary = summary_markdown(profile, stats, checks)
    assert summary.startswith("# Load run: smoke: FAILED")
    assert "| all | 200 | 10 | 0.0500 |" in summary
