"""The servo controller as it runs in the stack: gunicorn and the simulator as real processes.

Unplugging the device must not cost the service its process: the same gunicorn worker
answers 503 while the device is gone and recovers when it comes back. Every test runs
twice: on the simulator's pty, and with the simulator served over RFC 2217 on loopback
(``SERVO_PORT=rfc2217://...``), the way the servo controller reaches a simulator in
another container or pod, or a real Maestro behind ser2net.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from servoscope.settings import REPO_ROOT
from stack.components import gunicorn_argv
from stack.ephemeral import answers_ok, free_ports, http, wait_for

pytestmark = [pytest.mark.component, pytest.mark.timeout(60)]


@pytest.fixture(params=["pty", "rfc2217"])
def processes(request, tmp_path: Path) -> Iterator[tuple[str, str, subprocess.Popen]]:
    servo_port, control_port, rfc2217_port = free_ports(3)
    link = tmp_path / "maestro"
    network = ["--rfc2217-port", str(rfc2217_port)] if request.param == "rfc2217" else []
    device = f"rfc2217://127.0.0.1:{rfc2217_port}" if network else str(link)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    log = (tmp_path / "servo.log").open("w")
    simulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.servo.simulator",
            "--link",
            str(link),
            "--control-port",
            str(control_port),
            *network,
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    servo = subprocess.Popen(
        gunicorn_argv("services.servo.app:create_app()"),
        cwd=REPO_ROOT,
        env={
            **env,
            "SERVO_PORT": device,
            "SERVOSCOPE_BIND": f"127.0.0.1:{servo_port}",
            "SERVOSCOPE_TELEMETRY_ENABLED": "false",
        },
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    base = f"http://127.0.0.1:{servo_port}"
    try:
        wait_for(lambda: answers_ok(base + "/readyz"), timeout=20, message="servo ready")
        yield base, f"http://127.0.0.1:{control_port}", servo
    finally:
        for process in (servo, simulator):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (servo, simulator):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def post(url: str, body: dict) -> tuple[int, dict]:
    reply = http("POST", url, body=json.dumps(body), headers={"Content-Type": "application/json"})
    return reply.status, reply.json()


def workers(arbiter: subprocess.Popen) -> set[str]:
    """PIDs of gunicorn's worker processes (the arbiter's children)."""
    found = subprocess.run(
        ["pgrep", "-P", str(arbiter.pid)], capture_output=True, text=True, check=False
    )
    return set(found.stdout.split())


def test_the_worker_survives_unplug_and_replug(processes) -> None:
    base, control, servo = processes
    worker_pids = workers(servo)
    assert len(worker_pids) == 1  # one worker owns the port
    assert post(base + "/set-position", {"channel": 0, "angle": 45})[0] == 200

    assert http("PUT", control + "/faults/unplug").status == 200
    wait_for(lambda: http("GET", base + "/readyz").status == 503, timeout=5)
    status, problem = post(base + "/set-position", {"channel": 0, "angle": 50})
    assert status == 503 and problem["type"].endswith("/device-unavailable")
    assert http("GET", base + "/current-angle?channel=0").json()["stale"] is True

    assert http("DELETE", control + "/faults/unplug").status == 200
    wait_for(lambda: answers_ok(base + "/readyz"), timeout=10, message="ready after replug")
    assert post(base + "/set-position", {"channel": 0, "angle": 50})[0] == 200
    assert (
        workers(servo) == worker_pids and servo.poll() is None
    )  # the same worker, never restarted
    assert http("GET", base + "/status").json()["connects"] == 2
