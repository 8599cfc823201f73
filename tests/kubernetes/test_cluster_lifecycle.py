"""make k8s-up / make k8s-down: a second up says the cluster runs, and down leaves the host
exactly as it was — its network configuration, kernel settings, mounts, processes and files."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from deploy.cluster import dns, layout, lifecycle
from tests.kubernetes import hoststate
from tests.kubernetes.conftest import kubectl, make
from tests.system.test_readme import readme_commands

# While the cluster runs, only these may differ on the host: the namespace's own name, the
# containers' mounts, and the kernel settings the kubelet sets (put back by k8s-down).
ALLOWED_WHILE_RUNNING = ("netns", "mounts", "sysctls")


def _cluster_processes() -> list[str]:
    state = str(layout.STATE_DIR).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if state in argv:
                command = argv.replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{entry.name}: {command}")
    return found


def _net_sysctls(snapshot: dict[str, object]) -> dict[str, object]:
    sysctls: dict[str, str] = snapshot["sysctls"]  # type: ignore[assignment]
    return {"sysctls": {k: v for k, v in sysctls.items() if k.startswith("net/")}}


def test_up_twice_then_down_leaves_the_host_as_it_was() -> None:
    assert not lifecycle.running(), "a cluster is already running: make k8s-down first"
    before = hoststate.snapshot()

    up = make("k8s-up")
    assert "Ready, DNS answers" in up.stdout
    assert "Ready" in kubectl("get", "node", layout.NODE_NAME)
    assert dns.answers(f"kubernetes.default.svc.{layout.CLUSTER_DOMAIN}", layout.API_SERVICE_IP)
    during = hoststate.snapshot()
    sealed = {k: v for k, v in before.items() if k not in ALLOWED_WHILE_RUNNING}
    assert hoststate.differences(sealed, during) == []
    assert hoststate.differences(_net_sysctls(before), _net_sysctls(during)) == []

    # The README's kubectl line, verbatim.
    line = next(c for c in readme_commands("ip netns exec ") if "kubectl" in c)
    pods = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=60)
    assert pods.returncode == 0, pods.stderr
    assert "coredns" in pods.stdout and "Running" in pods.stdout, pods.stdout

    again = make("k8s-up")
    assert "already running" in again.stdout

    make("k8s-down")
    assert hoststate.differences(before, hoststate.snapshot()) == []
    assert _cluster_processes() == []
    assert not layout.STATE_DIR.exists()
    assert not layout.NETNS_PATH.exists()
    root = layout.CGROUP_ROOT.strip("/")
    cgroups = [Path("/sys/fs/cgroup", h, root) for h in os.listdir("/sys/fs/cgroup")]
    assert [c for c in cgroups if c.exists()] == []
