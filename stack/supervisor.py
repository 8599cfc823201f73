"""Starts the stack's processes in order, waits for each to be ready, restarts any
that die, and stops them all (newest first) on SIGTERM or Ctrl-C.

One supervisor process owns every child: ``make down`` only has to signal it.
Each child runs in its own session, so stopping a gunicorn master also reaches
its workers. The run directory holds a log per process and a pid file per child.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from servoscope.settings import REPO_ROOT, Settings
from stack import postgres
from stack.components import Component, components

STOP_GRACE_S = 8.0
RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)


class StartError(RuntimeError):
    """A component could not start; the message says which and where its log is."""


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


@dataclass
class Running:
    component: Component
    process: subprocess.Popen[bytes]
    restarts: int = 0
    died_at: float | None = None


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def is_ready(component: Component) -> bool:
    if component.ready_path is not None:
        return component.ready_path.exists()
    if component.ready_port is not None:
        return port_in_use("127.0.0.1", component.ready_port)
    if component.ready_url is None:
        return True
    try:
        with urllib.request.urlopen(component.ready_url, timeout=1) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


class Supervisor:
    def __init__(self, settings: Settings, run_dir: Path, *, restart: bool = True) -> None:
        self.settings = settings
        self.run_dir = run_dir
        self.restart = restart
        self.running: list[Running] = []
        self.stopping = False

    # -- start ---------------------------------------------------------------

    def check_ports(self) -> None:
        ports = self.settings.sections["ports"]
        # Not started by this stack: Toxiproxy (chaos runs), and instances beyond [instances].
        unused = (
            {"toxiproxy"}
            | (set() if postgres.wanted(self.settings) else {"postgres"})
            | {
                name
                for name in ports
                if "_" in name
                and name.rsplit("_", 1)[1].isdigit()
                and name not in self.settings.instance_ports(name.rsplit("_", 1)[0])
            }
        )
        busy = [
            (name, port)
            for name, port in ports.items()
            if name not in unused and port_in_use(self.settings.host, int(port))
        ]
        if busy:
            listing = ", ".join(f"{name}={port}" for name, port in busy)
            raise StartError(
                f"ports already in use: {listing}. Stop what holds them (`make down` if it is "
                f"another stack) or move this stack, e.g. SERVOSCOPE_PORTS_{busy[0][0].upper()}"
                f"={int(busy[0][1]) + 10000}."
            )

    def spawn(self, component: Component) -> subprocess.Popen[bytes]:
        if component.prepare:
            component.prepare()
        log_path = self.run_dir / "logs" / f"{component.name}.log"
        env = {**os.environ, **component.env, "PYTHONPATH": str(REPO_ROOT)}
        with open(log_path, "ab") as log:
            try:
                process = subprocess.Popen(
                    component.argv,
                    cwd=REPO_ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise StartError(
                    f"cannot start {component.name} ({component.argv[0]}): {exc}. "
                    "Run `make tools` to install the stack's tools."
                ) from None
        (self.run_dir / "pids" / f"{component.name}.pid").write_text(f"{process.pid}\n")
        return process

    def wait_ready(self, running: Running) -> None:
        component = running.component
        deadline = time.monotonic() + component.ready_timeout_s
        while not is_ready(component):
            if running.process.poll() is not None:
                raise StartError(
                    f"{component.name} exited with code {running.process.returncode} while "
                    f"starting; see {self.run_dir / 'logs' / (component.name + '.log')}"
                )
            if time.monotonic() > deadline:
                raise StartError(
                    f"{component.name} was not ready within {component.ready_timeout_s}s; "
                    f"see {self.run_dir / 'logs' / (component.name + '.log')}"
                )
            time.sleep(0.1)

    def start(self) -> None:
        for sub in ("logs", "pids"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        self.check_ports()
        for component in components(self.settings, self.run_dir):
            started = time.monotonic()
            say(f"starting {component.name}")
            running = Running(component, self.spawn(component))
            self.running.append(running)
            self.wait_ready(running)
            took = time.monotonic() - started
            say(f"{component.name} ready (pid {running.process.pid}, {took:.1f}s)")

    # -- supervise -----------------------------------------------------------

    def supervise_once(self) -> None:
        """Restart children that died, with backoff; called in the supervisor's loop."""
        now = time.monotonic()
        for running in self.running:
            if running.process.poll() is None:
                continue
            if running.died_at is None:
                running.died_at = now
                say(f"{running.component.name} exited with code {running.process.returncode}")
            backoff = RESTART_BACKOFF_S[min(running.restarts, len(RESTART_BACKOFF_S) - 1)]
            hold = self.run_dir / "hold" / running.component.name
            if not self.restart or hold.exists() or now - running.died_at < backoff:
                continue
            running.process = self.spawn(running.component)
            running.restarts += 1
            running.died_at = None
            say(f"restarted {running.component.name} (pid {running.process.pid})")

    # -- stop ----------------------------------------------------------------

    def stop(self) -> None:
        self.stopping = True
        for running in reversed(self.running):
            stop_process(running.process, running.component.name)
            with contextlib.suppress(FileNotFoundError):
                (self.run_dir / "pids" / f"{running.component.name}.pid").unlink()
        self.running.clear()


def stop_process(process: subprocess.Popen[bytes], name: str) -> None:
    """SIGTERM the child's process group, then SIGKILL what is left after a grace period."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        say(f"{name} ignored SIGTERM for {STOP_GRACE_S}s; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    # A gunicorn worker can outlive its master by a moment; the group must be empty.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    say(f"stopped {name}")


def run(settings: Settings, run_dir: Path, *, restart: bool = True) -> int:
    """The supervisor's main loop: start everything, supervise, stop on a signal."""
    supervisor = Supervisor(settings, run_dir, restart=restart)
    stop_requested = False

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True
        # Raise out of a blocking start-up wait too; the finally below cleans up.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    status = 0
    try:
        supervisor.start()
        print_urls(settings)
        say("stack ready")
        while not stop_requested:
            supervisor.supervise_once()
            time.sleep(0.2)
    except KeyboardInterrupt:
        say("stopping")
    except StartError as exc:
        say(f"stack failed to start: {exc}")
        status = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        supervisor.stop()
        say("stack stopped")
    return status


def print_urls(settings: Settings) -> None:
    url = settings.url
    print(
        f"""
  gateway      {url("gateway")}   (API key: servoscope-dev-key, local stack only)
  jaeger       {url("jaeger_ui")}/api/traces?service=gateway
  prometheus   {url("prometheus")}/targets
  simulator    {url("simulator_control")}/state

  try:  curl -s -X POST {url("gateway")}/api/servo/set-position \\
          -H 'Authorization: Bearer servoscope-dev-key' -H 'Content-Type: application/json' \\
          -d '{{"channel":0,"angle":120}}'
""",
        flush=True,
    )
    sys.stdout.flush()
