"""A client's bad input is the client's problem: it never trips a breaker, never reaches
the serial port, and the OpenAPI documents are the whole contract (a contract fuzzer,
schemathesis with every check, finds nothing, through the gateway and at each service).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from services.servo.config import load_config as servo_config
from stack.ephemeral import DEV_KEY, Stack, http, start_stack

pytestmark = pytest.mark.system
SCHEMATHESIS = Path(sys.executable).with_name("st")
SEED = 20261130
ODD_IDS = [
    "%20x",
    "x%20",
    "%C3%A9t%C3%A9",
    "%E2%9C%93%E2%9C%93",
    "%00",
    "a%00b",
    "..%2F",
    "..%2F..%2Fadmin",
    "%2E%2E",
    "x" * 3000,
    "0" * 17,
    "0" * 15,
    "ABCDEFABCDEFABCD",
    "%3Fx%3D1",
    "a%23b",
    "%0D%0AX-Injected:%201",
    "%25",
    "%7B%7D",
    "null",
    "-1",
    "0x1234",
    "%F0%9F%A4%96",
    "%FF%FE",
    "a%09b",
    "%7F",
    "moves",
    "%2F",
    "0123456789abcdeg",
    "%2Fmoves",
    "%5C..%5C",
]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of its own: its breakers and its device's target log start empty."""
    running = start_stack(tmp_path_factory.mktemp("hostile") / "run")
    yield running
    running.make("down")


def raw_get(stack: Stack, target: str) -> tuple[int, dict[str, Any]]:
    """GET ``target`` exactly as given (already percent-encoded), with the dev key."""
    parts = urlsplit(stack.url("gateway"))
    conn = HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("GET", target, headers={"Authorization": f"Bearer {DEV_KEY}"})
        reply = conn.getresponse()
        body = reply.read()
        kind = reply.getheader("Content-Type", "")
        return reply.status, json.loads(body) if "json" in kind else {}
    finally:
        conn.close()


def breakers(stack: Stack) -> dict[str, str]:
    listed = stack.api("GET", "/admin/breakers").json()["breakers"]
    return {f"{b['upstream']}/{b['instance']}": b["state"] for b in listed}


def test_odd_move_ids_are_the_clients_problem_and_trip_nothing(fresh: Stack) -> None:
    for odd in ODD_IDS:
        status, problem = raw_get(fresh, f"/api/motion/moves/{odd}")
        assert 400 <= status < 500, (odd, status, problem)
        if problem:  # Werkzeug's own 404 for a path that is no route also is problem+json
            assert problem["status"] == status
            assert problem["type"].startswith("/problems/")
            assert not problem["instance"].startswith("/moves"), problem  # the client's path
    assert set(breakers(fresh).values()) == {"closed"}
    assert fresh.api("GET", "/api/motion/moves").status == 200
    # The one from the issue: a space, twice, used to open the motion breaker.
    status, problem = raw_get(fresh, "/api/motion/moves/%20x")
    assert (status, problem["field"]) == (400, "id"), problem
    assert problem["instance"] == "/api/motion/moves/ x"


def test_problem_types_lead_to_their_documentation(fresh: Stack) -> None:
    _, problem = raw_get(fresh, "/api/motion/moves/%20x")
    page = http("GET", fresh.url("gateway") + problem["type"])
    assert page.status == 200
    assert page.body.decode().startswith("## invalid-path-parameter\n")
    unknown = http("GET", fresh.url("motion") + "/moves/0123456789abcdef")
    assert unknown.status == 404
    assert http("GET", fresh.url("motion") + unknown.json()["type"]).status == 200


def _fuzz(stack: Stack, base: str, report: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(SCHEMATHESIS),
            "--config-file",
            str(Path(__file__).with_name("schemathesis.toml")),
            "run",
            f"{base}/openapi.json",
            "--url",
            base,
            "--checks",
            "all",
            "--seed",
            str(SEED),
            "--workers",
            "1",
            "--no-shrink",
            "--request-timeout",
            "10",
            "--report",
            "har",
            "--report-har-path",
            str(report),
            *args,
        ],
        cwd=report.parent,  # its cache of past failures stays with this run, not the repo
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )


def _explained(stack: Stack, entries: list[dict[str, Any]]) -> dict[int, list[tuple[int, int]]]:
    """Per channel, the target ranges (quarter-µs) that accepted commands account for:
    a set-position's exact pulse, a move's span from start to target, home."""
    config = servo_config(stack.settings, device_needed=False)
    spans: dict[int, list[tuple[int, int]]] = {}
    for entry in entries:
        path = urlsplit(entry["request"]["url"]).path
        status = entry["response"]["status"]
        text = entry["response"]["content"].get("text") or "null"
        if entry["request"]["method"] != "POST" or status >= 300:
            continue
        answer = json.loads(text)
        if path.endswith("/set-position"):
            qus = round(answer["pulse_us"] * 4)
            spans.setdefault(answer["channel"], []).append((qus, qus))
        elif path.endswith("/moves"):
            calibration = config.calibration_for(answer["channel"])
            ends = sorted(
                calibration.angle_to_quarter_us(answer[name])
                for name in ("start_angle", "target_angle")
            )
            spans.setdefault(answer["channel"], []).append((ends[0] - 4, ends[1] + 4))
        elif path.endswith("/home"):
            for target in answer["targets"]:
                qus = round(target["pulse_us"] * 4)
                spans.setdefault(target["channel"], []).append((qus, qus))
    return spans


def test_the_contract_fuzzer_finds_nothing_and_trips_nothing(fresh: Stack, tmp_path: Path) -> None:
    auth = f"Authorization: Bearer {DEV_KEY}"
    entries: list[dict[str, Any]] = []
    runs = [
        # Through the gateway: >= 1,000 cases (examples, coverage, fuzzing), then stateful.
        (fresh.url("gateway"), ["--max-examples", "75", "-H", auth]),
        *((fresh.url(name), ["--max-examples", "25"]) for name in ("servo", "motion", "telemetry")),
        (fresh.url("state"), ["--max-examples", "10"]),
    ]
    for index, (base, args) in enumerate(runs):
        report = tmp_path / f"fuzz-{index}.har"
        result = _fuzz(fresh, base, report, *args)
        assert result.returncode == 0, f"{base}\n{result.stdout[-8000:]}\n{result.stderr[-2000:]}"
        har = json.loads(report.read_text())["log"]["entries"]
        if index == 0:
            assert len(har) >= 1000, f"only {len(har)} cases through the gateway"
        entries.extend(har)
    assert set(breakers(fresh).values()) == {"closed"}, breakers(fresh)
    # Every target the device was ever set to is explained by an accepted command: no
    # rejected request put a byte on the serial port.
    explained = _explained(fresh, entries)
    control = fresh.url("simulator_control")
    for channel in range(servo_config(fresh.settings, device_needed=False).channel_count):
        targets = http("GET", f"{control}/targets/{channel}").json()["targets"]
        stray = [
            qus
            for qus in targets
            if not any(low <= qus <= high for low, high in explained.get(channel, []))
        ]
        assert not stray, (channel, stray[:10], explained.get(channel, [])[:10])
