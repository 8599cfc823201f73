"""compose/ run for real: podman-compose, the images of ``make images``, no registry.

The whole compose project runs inside a network namespace this test creates with
loopback only (a ``sleep`` holding it, stopped by PID): podman's bridge, its masquerade
rules and every container live there, so nothing can route out of the machine, by
construction. The checks are the local stack's skeleton checks, made from inside that
namespace: the README's curl lines through the gateway, one set-position as one trace in
Jaeger from the gateway to the servo controller's serial span, every Prometheus target
up. Then everything the project made is taken down by name (containers, pod, network,
volumes), and the host's network configuration is compared with what it was before.
Grafana has no image here: compose runs without it (compose/README.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from servoscope.settings import REPO_ROOT
from stack.ephemeral import DEV_KEY, wait_for
from tests.deploy import host_network
from tests.deploy.traces import GATEWAY_TO_SERIAL, span_names
from tests.system.test_readme import check_readme_curl_commands

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(600)]

COMPOSE = REPO_ROOT / "compose"
SERVICES = [
    "stack-network", "jaeger", "prometheus", "redis", "simulator", "servo-controller",
    "motion-planner", "telemetry-logger", "device-state", "gateway",
]  # fmt: skip
JOBS = {"gateway", "servo-controller", "motion-planner", "telemetry-logger", "device-state"}
PODMAN_COMPOSE = str(Path(sys.executable).parent / "podman-compose")
NAMESPACE_LIFETIME_S = 900  # the holder ends by itself even if this test is killed


@dataclass
class ComposeStack:
    project: str
    netns: str  # /proc/<holder pid>/ns/net
    env: dict[str, str]

    def inside(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run a command in the project's network namespace."""
        return subprocess.run(
            ["nsenter", f"--net={self.netns}", *argv],
            capture_output=True, text=True, timeout=timeout, env=self.env, check=False,
        )  # fmt: skip

    def compose(self, *args: str) -> subprocess.CompletedProcess:
        return self.inside(
            PODMAN_COMPOSE, "-p", self.project,
            "-f", str(COMPOSE / "docker-compose.yml"), "-f", str(COMPOSE / "offline.yml"),
            *args, timeout=300,
        )  # fmt: skip

    def get(self, url: str, *headers: str) -> tuple[int, str]:
        args = [a for h in headers for a in ("-H", h)]
        done = self.inside("curl", "-s", "-m", "5", "-w", "\n%{http_code}", *args, url)
        body, _, status = done.stdout.rpartition("\n")
        return int(status or 0), body

    def get_json(self, url: str) -> object | None:
        status, body = self.get(url)
        return json.loads(body) if status == 200 else None


def podman(stack: ComposeStack, *args: str) -> str:
    return stack.inside("podman", *args).stdout


def leftovers(stack: ComposeStack) -> dict[str, str]:
    label = f"label=io.podman.compose.project={stack.project}"
    return {
        "containers": podman(stack, "ps", "-a", "-q", "--filter", label),
        "pods": podman(stack, "pod", "ls", "-q", "--filter", f"name=pod_{stack.project}"),
        "networks": podman(stack, "network", "ls", "-q", "--filter", label),
        "volumes": podman(stack, "volume", "ls", "-q", "--filter", label),
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[ComposeStack]:
    if os.geteuid() != 0 or shutil.which("podman") is None:
        pytest.fail("the compose test runs rootful podman: run make test as root (CI does)")
    before = host_network.snapshot()
    conf = subprocess.run(
        [REPO_ROOT / "tools" / "containers.sh", "--conf"], capture_output=True, text=True,
        check=True,
    ).stdout.strip()  # fmt: skip
    holder = subprocess.Popen(
        ["unshare", "--net", "sh", "-c", f"ip link set lo up && exec sleep {NAMESPACE_LIFETIME_S}"]
    )
    project = f"servoscope-test-{os.getpid()}"
    env = {**os.environ, "CONTAINERS_CONF": conf}
    stack = ComposeStack(project, f"/proc/{holder.pid}/ns/net", env)
    log = tmp_path_factory.mktemp("compose") / "compose.log"
    try:
        wait_for(lambda: stack.inside("ip", "link", "show", "lo").stdout.count("UP") > 0,
                 timeout=5, message="the namespace's loopback")  # fmt: skip
        up = stack.compose("up", "-d", *SERVICES)
        log.write_text(up.stdout + up.stderr)
        assert up.returncode == 0, f"podman-compose up failed; see {log}"
        yield stack
    finally:
        # Every container's own log goes into the compose log before down removes it.
        label = f"label=io.podman.compose.project={project}"
        for name in podman(stack, "ps", "-a", "--format", "{{.Names}}", "--filter", label).split():
            logs = stack.inside("podman", "logs", "--tail", "40", name)
            with log.open("a") as out:
                out.write(f"\n==> {name}\n{logs.stdout}{logs.stderr}")
        down = stack.compose("down", "-v", "-t", "5")
        with log.open("a") as out:
            out.write(down.stdout + down.stderr)
        left = leftovers(stack)
        # Whatever down missed goes by name, so no later run inherits it.
        for kind, ids in left.items():
            if ids.split():
                command = {
                    "containers": ["rm", "-f"],
                    "pods": ["pod", "rm", "-f"],
                    "networks": ["network", "rm", "-f"],
                    "volumes": ["volume", "rm", "-f"],
                }
                podman(stack, *command[kind], *ids.split())  # fmt: skip
        holder.terminate()
        holder.wait(timeout=10)
    # After the checks: down left nothing of the project, and the host's network is as it was.
    assert not any(ids.split() for ids in left.values()), f"left behind by down: {left}"
    assert host_network.snapshot() == before, "the host's network configuration changed"


def test_nothing_can_route_out_of_the_namespace(stack: ComposeStack) -> None:
    links = stack.inside("ip", "-o", "link", "show").stdout
    names = {line.split(": ")[1].split("@")[0] for line in links.splitlines()}
    assert all(n == "lo" or n.startswith(("podman", "veth")) for n in names), names
    for address in ("1.1.1.1", "10.0.0.1", "192.168.1.1"):
        route = stack.inside("ip", "route", "get", address)
        assert route.returncode != 0 and "unreachable" in route.stderr, route.stdout


def test_the_readme_curl_lines_through_the_gateway(stack: ComposeStack) -> None:
    # Published ports reach the gateway from podman's bridge, not loopback: a key is needed.
    key = f"Authorization: Bearer {DEV_KEY}"
    wait_for(
        lambda: stack.get("http://127.0.0.1:8080/readyz", key)[0] == 200,
        timeout=90, interval=1, message="the gateway ready in compose",
    )  # fmt: skip

    def servo_state() -> str:
        # /status answers 200 in every state: "connecting" still refuses commands (503).
        status, body = stack.get("http://127.0.0.1:8080/api/servo/status", key)
        return json.loads(body).get("state", "") if status == 200 else ""

    wait_for(
        lambda: servo_state() == "active",
        timeout=60, interval=1, message="the servo controller connected over RFC 2217",
    )  # fmt: skip
    check_readme_curl_commands(
        lambda command: stack.inside("bash", "-c", command, timeout=30), "127.0.0.1:8080"
    )


def test_one_set_position_is_one_trace_from_gateway_to_the_serial_byte(
    stack: ComposeStack,
) -> None:
    done = stack.inside(
        "curl", "-s", "-D", "-", "-o", "/dev/null", "-X", "POST",
        "http://127.0.0.1:8080/api/servo/set-position",
        "-H", f"Authorization: Bearer {DEV_KEY}", "-H", "Content-Type: application/json",
        "-d", '{"channel":0,"angle":75}',
    )  # fmt: skip
    headers = dict(
        line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line
    )  # fmt: skip
    assert " 200" in done.stdout.splitlines()[0], done.stdout
    trace_id = headers["X-Trace-Id"].strip()

    def spans():
        got = stack.get_json(f"http://127.0.0.1:16686/api/traces/{trace_id}")
        if not got:
            return None
        named = span_names(got["data"][0])
        return named if any(op.startswith("serial ") for _, op in named) else None

    named = wait_for(spans, timeout=30, interval=0.5, message="the trace in compose's Jaeger")
    assert set(named) >= GATEWAY_TO_SERIAL, named


def test_every_prometheus_target_is_up(stack: ComposeStack) -> None:
    def targets():
        got = stack.get_json("http://127.0.0.1:9090/api/v1/targets")
        if not got:
            return None
        active = got["data"]["activeTargets"]
        jobs = {t["labels"]["job"] for t in active}
        healthy = all(t["health"] == "up" for t in active)
        return active if jobs >= JOBS | {"prometheus"} and healthy else None

    active = wait_for(targets, timeout=60, interval=1, message="every target up")
    assert {t["labels"]["job"] for t in active} == JOBS | {"prometheus"}
