"""A whole stack of real processes on free ports, beside any stack already running.

Tests, benchmarks, load runs and chaos experiments start their stacks here, with the
README's own commands (``make up``, ``make down``), so those commands are exercised
every time::

    with ephemeral_stack(tmp_dir / "run") as stack:
        stack.api("GET", "/api/servo/current-angle?channel=0")
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servoscope.settings import REPO_ROOT, Settings, env_name, load
from stack import postgres

DEV_KEY = "servoscope-dev-key"


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class HttpReply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    method: str,
    url: str,
    *,
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> HttpReply:
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return HttpReply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return HttpReply(error.code, dict(error.headers), error.read())


@dataclass
class Stack:
    settings: Settings
    env: dict[str, str]
    run_dir: Path
    up_output: str = ""

    def url(self, name: str) -> str:
        return self.settings.url(name)

    def api(self, method: str, path: str, *, key: str | None = DEV_KEY, **kwargs: Any) -> HttpReply:
        headers = dict(kwargs.pop("headers", {}) or {})
        if key is not None:
            headers.setdefault("Authorization", f"Bearer {key}")
        if kwargs.get("body") is not None:
            headers.setdefault("Content-Type", "application/json")
        return http(method, self.url("gateway") + path, headers=headers, **kwargs)

    def simulator_state(self) -> dict[str, Any]:
        return http("GET", self.url("simulator_control") + "/state").json()

    def prometheus_query(self, promql: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"query": promql})
        reply = http("GET", f"{self.url('prometheus')}/api/v1/query?{query}")
        assert reply.status == 200, reply.body
        return reply.json()["data"]["result"]

    def prometheus_exemplars(self, promql: str, seconds: float = 300) -> list[dict[str, Any]]:
        """Exemplars of the series ``promql`` selects over the last ``seconds``, as Grafana
        asks for them: one entry per series, with ``seriesLabels`` and ``exemplars``."""
        now = time.time()
        query = urllib.parse.urlencode({"query": promql, "start": now - seconds, "end": now})
        reply = http("GET", f"{self.url('prometheus')}/api/v1/query_exemplars?{query}")
        assert reply.status == 200, reply.body
        return reply.json()["data"]

    def make(self, *targets: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", *targets],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def pids(self) -> dict[str, int]:
        return {
            path.stem: int(path.read_text())
            for path in (self.run_dir / "pids").glob("*.pid")
            if path.read_text().strip()
        }


def stack_env(run_dir: Path, **overrides: str) -> dict[str, str]:
    """Environment for a stack on fresh free ports in its own run directory."""
    base = load()
    names = list(base.sections["ports"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVOSCOPE_")}
    env.pop("SERVO_PORT", None)
    for name, port in zip(names, free_ports(len(names)), strict=True):
        env[env_name("ports", name)] = str(port)
    env[env_name("stack", "run_dir")] = str(run_dir)
    env.update(overrides)
    return env


def standalone_env(port: int, **overrides: str) -> dict[str, str]:
    """Environment for one service under gunicorn outside any stack (``gunicorn_argv``):
    bound to ``port`` on loopback, tracing and streams off (a test turns streams on with
    its own Redis), no settings inherited from the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVOSCOPE_")}
    env.update(
        SERVOSCOPE_BIND=f"127.0.0.1:{port}",
        SERVOSCOPE_TELEMETRY_ENABLED="false",
        SERVOSCOPE_STREAMS_ENABLED="false",
        PYTHONPATH=str(REPO_ROOT),
    )
    env.update(overrides)
    return env


def start_stack(run_dir: Path, **overrides: str) -> Stack:
    env = stack_env(run_dir, **overrides)
    stack = Stack(load(env), env, run_dir)
    result = stack.make("up")
    stack.up_output = result.stdout
    if result.returncode != 0:
        stack.make("down")
        logs = "\n".join(
            f"--- {p.name}\n{p.read_text()[-3000:]}" for p in (run_dir / "logs").glob("*.log")
        )
        raise RuntimeError(f"make up failed:\n{result.stdout}\n{result.stderr}\n{logs}")
    return stack


def wait_for(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.1, message: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def answers_ok(url: str) -> bool:
    """True when ``url`` answers 2xx; False while nothing listens there."""
    try:
        return 200 <= http("GET", url, timeout=1).status < 300
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def ephemeral_stack(run_dir: Path, **overrides: str) -> Iterator[Stack]:
    """A stack on free ports for the duration of a ``with`` block; always brought down."""
    stack = start_stack(run_dir, **overrides)
    try:
        yield stack
    finally:
        stack.make("down")
        postgres.remove(run_dir)  # a PostgreSQL cluster may live outside the run directory


def terminate(process: subprocess.Popen, grace_s: float = 8.0) -> None:
    """SIGTERM a process this harness started, SIGKILL it after ``grace_s``; wait for it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
