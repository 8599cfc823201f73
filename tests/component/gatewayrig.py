"""Real processes for the gateway's tests: test upstreams, redis-server, and the gateway
under gunicorn with a route table written by the test. Every process is stopped by pid.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servoscope.settings import REPO_ROOT
from stack.components import gunicorn_argv
from stack.ephemeral import DEV_KEY, HttpReply, free_ports, http, wait_for


def _listening(url: str) -> bool:
    try:
        http("GET", url, timeout=1)
        return True
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Upstream:
    name: str
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_mode(self, **mode: Any) -> None:
        assert http("POST", self.url + "/_mode", body=json.dumps(mode)).status == 200

    def stats(self, tag: str) -> dict[str, int]:
        return http("GET", f"{self.url}/_stats?tag={tag}").json()


def start_upstream(name: str) -> Upstream:
    (port,) = free_ports(1)
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.component.upstream", "--port", str(port), "--name", name],
        cwd=REPO_ROOT,
    )
    upstream = Upstream(name, port, process)
    wait_for(lambda: _listening(upstream.url + "/_stats"), timeout=10, message=f"upstream {name}")
    return upstream


@dataclass
class Redis:
    port: int
    process: subprocess.Popen

    def start_again(self) -> None:
        """Restart a stopped redis-server on the same port."""
        self.process = _spawn_redis(self.port)
        wait_for(lambda: _redis_up(self.port), timeout=10, message="redis")


def _spawn_redis(port: int) -> subprocess.Popen:
    return subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip


def _redis_up(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_redis() -> Redis:
    (port,) = free_ports(1)
    redis = Redis(port, _spawn_redis(port))
    wait_for(lambda: _redis_up(port), timeout=10, message="redis")
    return redis


@dataclass
class Gateway:
    port: int
    process: subprocess.Popen
    routes_file: Path
    log_file: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, method: str, path: str, *, key: str | None = DEV_KEY, **kwargs: Any) -> HttpReply:
        headers = dict(kwargs.pop("headers", {}) or {})
        if key is not None:
            headers.setdefault("Authorization", f"Bearer {key}")
        return http(method, self.url + path, headers=headers, **kwargs)

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples whose labels include ``labels`` (0 when absent)."""
        text = http("GET", self.url + "/metrics").body.decode()
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            head, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total

    def log(self) -> str:
        return self.log_file.read_text()


READER_KEY = "test-reader-key"


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


KEYS_YAML = f"""
keys:
  - {{name: dev, sha256: {_sha(DEV_KEY)}, scopes: [read, write, admin]}}
  - {{name: reader, sha256: {_sha(READER_KEY)}, scopes: [read]}}
"""


def gateway_env(
    work: Path,
    routes: str,
    *,
    workers: int = 1,
    threads: int = 16,
    redis_port: int | None = None,
    jaeger_otlp_port: int | None = None,
) -> tuple[dict[str, str], int, Path]:
    routes_file = work / "routes.yaml"
    routes_file.write_text(textwrap.dedent(routes))
    keys_file = work / "keys.yaml"
    keys_file.write_text(KEYS_YAML)
    (port,) = free_ports(1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVOSCOPE_")}
    env.update(
        {
            "PYTHONPATH": str(REPO_ROOT),
            "SERVOSCOPE_SERVICE": "gateway",
            "SERVOSCOPE_BIND": f"127.0.0.1:{port}",
            "SERVOSCOPE_WORKERS": str(workers),
            "SERVOSCOPE_THREADS": str(threads),
            "SERVOSCOPE_PORTS_GATEWAY": str(port),
            "SERVOSCOPE_GATEWAY_WORKERS": str(workers),
            "SERVOSCOPE_GATEWAY_THREADS": str(threads),
            "SERVOSCOPE_GATEWAY_ROUTES_FILE": str(routes_file),
            "SERVOSCOPE_GATEWAY_KEYS_FILE": str(keys_file),
            "SERVOSCOPE_GATEWAY_SHARED_STATE": "redis" if redis_port else "local",
            "SERVOSCOPE_PORTS_REDIS": str(redis_port or free_ports(1)[0]),
            "SERVOSCOPE_TELEMETRY_ENABLED": "true" if jaeger_otlp_port else "false",
        }
    )
    if jaeger_otlp_port:
        env["SERVOSCOPE_PORTS_JAEGER_OTLP_HTTP"] = str(jaeger_otlp_port)
    return env, port, routes_file


def spawn_gateway(env: dict[str, str], log_file: Path) -> subprocess.Popen:
    with log_file.open("ab") as log:
        return subprocess.Popen(
            gunicorn_argv("gateway.app:create_app()"),
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def start_gateway(work: Path, routes: str, **options: Any) -> Gateway:
    work.mkdir(parents=True, exist_ok=True)
    env, port, routes_file = gateway_env(work, routes, **options)
    log_file = work / "gateway.log"
    gateway = Gateway(port, spawn_gateway(env, log_file), routes_file, log_file, env)

    def ready() -> bool:
        if gateway.process.poll() is not None:
            raise RuntimeError(f"the gateway exited:\n{log_file.read_text()[-4000:]}")
        return _listening(gateway.url + "/healthz")

    wait_for(ready, timeout=20, message="the gateway")
    return gateway


def timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started
