"""The smoke load profile runs against a fresh stack and passes its thresholds; an
impossible threshold makes the run fail and say so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.parse

from servoscope.settings import REPO_ROOT
from stack.ephemeral import answers_ok, ephemeral_stack, free_ports, http, wait_for


def run_load(host: str, results, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtests",
            "run",
            "--host",
            host,
            "--results",
            str(results),
            *extra,
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_smoke_profile_passes_on_a_fresh_stack_and_a_broken_threshold_fails(tmp_path) -> None:
    with ephemeral_stack(tmp_path / "run") as stack:
        host = stack.url("gateway")
        smoke = stack.make("load", "PROFILE=smoke", f"RESULTS={tmp_path / 'results'}")
        assert smoke.returncode == 0, smoke.stdout + smoke.stderr
        (run_dir,) = (tmp_path / "results").glob("*-smoke")
        summary = (run_dir / "summary.md").read_text()
        assert "# Load run: smoke: PASSED" in summary
        for route in ("POST /api/servo/set-position", "GET /api/servo/current-angle"):
            assert f"| {route} |" in summary
        assert (run_dir / "report.html").stat().st_size > 0
        assert (run_dir / "locust_stats.csv").exists()

        # Load traffic is findable in Jaeger: its own traces, marked synthetic.
        tags = urllib.parse.quote(json.dumps({"user_agent.original": "servoscope-loadtest"}))
        found = http(
            "GET", f"{stack.url('jaeger_ui')}/api/traces?service=gateway&tags={tags}&limit=20"
        ).json()["data"]
        assert len({trace["traceID"] for trace in found}) >= 10

        strict = tmp_path / "strict.yaml"
        strict.write_text(
            "strict:\n  stages: [{duration_s: 4, users: 2, spawn_rate: 2}]\n"
            "  thresholds: {all: {max_p95_ms: 0.001}}\n"
        )
        broken = run_load(
            host, tmp_path / "strict", "--profile", "strict", "--profiles", str(strict)
        )
        assert broken.returncode == 1
        assert "threshold broken: all: max_p95_ms" in broken.stdout


def test_make_load_ui_serves_locusts_web_ui(stack) -> None:
    port = free_ports(1)[0]
    ui = subprocess.Popen(
        ["make", "--no-print-directory", "load-ui", f"WEB_PORT={port}"],
        cwd=REPO_ROOT,
        env=stack.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: answers_ok(f"http://127.0.0.1:{port}/"), 30, message="locust's UI")
        page = http("GET", f"http://127.0.0.1:{port}/").body.decode()
        assert "locust" in page.lower()
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=15)
