"""Chaos Toolkit actions: the faults, and the rollbacks that undo them.

Every function takes plain arguments so experiments can pass them from their
``configuration`` (the stack's run directory and URLs come from the environment the
chaos runner sets). Processes are found by the pid files the stack supervisor
writes, and only those are signalled.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def _pid(run_dir: str, name: str) -> int:
    return int((Path(run_dir) / "pids" / f"{name}.pid").read_text())


def _hold(run_dir: str, name: str) -> Path:
    return Path(run_dir) / "hold" / name


def kill_process(run_dir: str, name: str) -> int:
    """SIGKILL a process of the stack and keep the supervisor from restarting it."""
    hold = _hold(run_dir, name)
    hold.parent.mkdir(exist_ok=True)
    hold.touch()
    pid = _pid(run_dir, name)
    os.killpg(pid, signal.SIGKILL)
    return pid


def _ready(ready_url: str | None, ready_port: int | None) -> bool:
    try:
        if ready_port is not None:
            socket.create_connection(("127.0.0.1", ready_port), timeout=1).close()
            return True
        with urllib.request.urlopen(ready_url, timeout=1) as reply:
            return reply.status == 200
    except OSError:
        return False


def restart_process(
    run_dir: str,
    name: str,
    ready_url: str | None = None,
    ready_port: int | None = None,
    timeout_s: float = 20.0,
) -> float:
    """Let the supervisor restart it; returns the seconds until it was ready (its
    ``ready_url`` answered 200, or its ``ready_port`` accepted a connection)."""
    _hold(run_dir, name).unlink(missing_ok=True)
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if _ready(ready_url, ready_port):
            return round(time.monotonic() - started, 2)
        time.sleep(0.1)
    raise RuntimeError(f"{name} was not ready within {timeout_s}s")


def suspend_process(run_dir: str, name: str) -> int:
    """SIGSTOP a process group: it holds its sockets open and answers nothing."""
    pid = _pid(run_dir, name)
    os.killpg(pid, signal.SIGSTOP)
    return pid


def resume_process(run_dir: str, name: str) -> int:
    pid = _pid(run_dir, name)
    os.killpg(pid, signal.SIGCONT)
    return pid


def _request(method: str, url: str, body: object | None = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as reply:
        raw = reply.read()
    return json.loads(raw) if raw else None


def simulator_fault(control_url: str, mode: str, params: dict | None = None) -> object:
    """Switch a fault of the Maestro simulator on: unplug, stall, slow, garble, error."""
    return _request("PUT", f"{control_url}/faults/{mode}", params or {})


def clear_simulator_faults(control_url: str) -> object:
    """Every fault off (an unplugged device is plugged back in)."""
    return _request("DELETE", f"{control_url}/faults")


def add_toxic(toxiproxy_url: str, proxy: str, name: str, kind: str, attributes: dict) -> object:
    """Add a Toxiproxy toxic (``latency``, ``reset_peer``, ...) to the downstream side."""
    body = {"name": name, "type": kind, "stream": "downstream", "attributes": attributes}
    return _request("POST", f"{toxiproxy_url}/proxies/{proxy}/toxics", body)


def remove_toxics(toxiproxy_url: str, proxy: str) -> None:
    """Remove every toxic of ``proxy``; the network between the hops is clean again."""
    proxy_state = _request("GET", f"{toxiproxy_url}/proxies/{proxy}")
    assert isinstance(proxy_state, dict)
    for toxic in proxy_state.get("toxics", []):
        _request("DELETE", f"{toxiproxy_url}/proxies/{proxy}/toxics/{toxic['name']}")


# --- a traffic spike ---------------------------------------------------------------

_spike: subprocess.Popen | None = None


SPIKE_READY_S = 120  # locust's start-up, at nice 10 beside a CPU hog, can take a minute


def prepare_spike(
    gateway_url: str, api_key: str, run_dir: str, users: int = 100, duration_s: int = 12
) -> int:
    """Start ``users`` locust users (chaos/spike_users.py) under ``api_key`` and return once
    every one is spawned and waiting; :func:`start_spike` releases them. After that each
    sends one request a second for ``duration_s``, then locust quits by itself."""
    global _spike
    ready = Path(run_dir) / "spike.ready"
    ready.unlink(missing_ok=True)
    with (Path(run_dir) / "logs" / "spike-locust.log").open("w") as log:
        _spike = subprocess.Popen(
            [
                # The load generator stands for other machines: it yields most of the CPU
                # to the stack it loads, yet (unlike nice 19) still gets enough beside a
                # normal-priority hog to send its burst; the probes check it did.
                *("nice", "-n", "10", sys.executable, "-m", "locust"),
                *("-f", str(Path(__file__).with_name("spike_users.py"))),
                *("--headless", "--only-summary", "--host", gateway_url),
                *("-u", str(users), "-r", str(users)),
                *("-t", f"{SPIKE_READY_S + duration_s + 30}s"),  # a safety net only
            ],
            env={
                **os.environ,
                "SERVOSCOPE_API_KEY": api_key,
                "SERVOSCOPE_SPIKE_READY": str(ready),
                "SERVOSCOPE_SPIKE_SECONDS": str(duration_s),
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + SPIKE_READY_S
    while not ready.exists():
        if _spike.poll() is not None or time.monotonic() > deadline:
            _spike.kill()
            raise RuntimeError(f"locust not ready within {SPIKE_READY_S}s (see spike-locust.log)")
        time.sleep(0.1)
    return _spike.pid


def start_spike() -> int:
    """Release the burst :func:`prepare_spike` readied."""
    if _spike is None or _spike.poll() is not None:
        raise RuntimeError("no spike prepared")
    _spike.send_signal(signal.SIGUSR1)
    return _spike.pid


def stop_spike() -> int | None:
    """Wait for the spike to end by itself (or end it); its exit status, None if none ran."""
    if _spike is None:
        return None
    try:
        return _spike.wait(timeout=30)
    except subprocess.TimeoutExpired:
        _spike.terminate()
        return _spike.wait(timeout=10)
