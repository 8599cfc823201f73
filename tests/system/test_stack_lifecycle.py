"""`make down` and Ctrl-C leave no process of the stack behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error

import pytest

from servoscope.settings import REPO_ROOT, load
from stack.__main__ import pid_alive
from stack.ephemeral import answers_ok, http, stack_env, start_stack, wait_for


def test_make_down_leaves_no_process(tmp_path) -> None:
    stack = start_stack(tmp_path / "run")
    pids = stack.pids()
    assert {"jaeger", "prometheus", "simulator", "servo-controller", "gateway"} <= set(pids)
    supervisor = int((stack.run_dir / "supervisor.pid").read_text())
    assert all(pid_alive(pid) for pid in [*pids.values(), supervisor])
    # gunicorn workers are children of the recorded masters: they must go too.
    workers = [
        int(p)
        for pid in pids.values()
        for p in subprocess.run(
            ["pgrep", "-P", str(pid)], capture_output=True, text=True
        ).stdout.split()
    ]
    assert workers

    result = stack.make("down")
    assert result.returncode == 0, result.stderr
    assert "stack is down" in result.stdout
    leftovers = [pid for pid in [*pids.values(), *workers, supervisor] if pid_alive(pid)]
    assert leftovers == []
    with pytest.raises(urllib.error.URLError):
        http("GET", stack.url("gateway") + "/healthz", timeout=1)
    assert not list((stack.run_dir / "pids").glob("*.pid"))


def test_a_killed_process_is_restarted_by_the_supervisor(tmp_path) -> None:
    stack = start_stack(tmp_path / "run")
    try:
        servo = stack.pids()["servo-controller"]
        os.killpg(servo, signal.SIGKILL)
        restarted = wait_for(
            lambda: (pid := stack.pids().get("servo-controller")) != servo and pid,
            timeout=15,
            message="the servo controller restarted",
        )
        assert pid_alive(restarted)
        wait_for(
            lambda: answers_ok(stack.url("servo") + "/readyz"),
            timeout=15,
            message="the restarted servo controller ready",
        )
    finally:
        stack.make("down")


def test_foreground_stack_stops_on_ctrl_c(tmp_path) -> None:
    run_dir = tmp_path / "run"
    env = stack_env(run_dir)
    process = subprocess.Popen(
        [sys.executable, "-m", "stack", "up", "--foreground"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("==> stack ready") or line.startswith("==> stack failed"):
                break
        assert line.startswith("==> stack ready"), line
        pids = {p.stem: int(p.read_text()) for p in (run_dir / "pids").glob("*.pid")}
        gateway = load(env).url("gateway")
        assert http("GET", gateway + "/healthz").status == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        assert [name for name, pid in pids.items() if pid_alive(pid)] == []
    finally:
        if process.poll() is None:
            process.kill()
            subprocess.run([sys.executable, "-m", "stack", "down"], cwd=REPO_ROOT, env=env)


def test_make_up_refuses_busy_ports_and_says_how_to_move(tmp_path) -> None:
    env = stack_env(tmp_path / "run")
    settings = load(env)
    with socket.socket() as busy:
        busy.bind((settings.host, settings.port("gateway")))
        busy.listen()
        result = subprocess.run(
            ["make", "up"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
        )
    assert result.returncode != 0
    assert f"gateway={settings.port('gateway')}" in result.stdout
    assert "SERVOSCOPE_PORTS_GATEWAY=" in result.stdout
    assert not list((tmp_path / "run" / "pids").glob("*.pid"))
