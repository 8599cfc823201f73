"""Where the cluster lives: its namespace, addresses, directories and binaries (one place)."""

from __future__ import annotations

import functools
import os
import shlex
import subprocess
from pathlib import Path

from servoscope.settings import REPO_ROOT

NETNS = "servoscope-k8s"
NETNS_PATH = Path("/run/netns") / NETNS
NODE_NAME = "servoscope-node"
# The node's address sits on an interface of its own (a bridge without ports): the kubelet
# refuses a loopback node IP, and that interface leads nowhere, so a packet for an address the
# namespace does not hold is dropped there.
NODE_INTERFACE = "node0"
NODE_IP = "10.200.0.1"
BRIDGE = "cni0"
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.96.0.0/16"
API_SERVICE_IP = "10.96.0.1"
DNS_SERVICE_IP = "10.96.0.10"
API_PORT = 6443
CLUSTER_DOMAIN = "cluster.local"
# Pods' cgroups live under this root in every hierarchy, so k8s-down finds and removes them all.
CGROUP_ROOT = "/servoscope-k8s"
# Kernel settings the kubelet changes on start (its "kernel defaults"); k8s-up records them
# and k8s-down puts them back.
KUBELET_SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
)

STATE_DIR = Path(os.environ.get("SERVOSCOPE_K8S_DIR", "/var/lib/servoscope-k8s"))
PKI = STATE_DIR / "pki"
KUBECONFIG = STATE_DIR / "admin.kubeconfig"
LOGS = STATE_DIR / "logs"
PIDS = STATE_DIR / "pids"
CONTAINERD_SOCKET = STATE_DIR / "containerd" / "containerd.sock"
KUBELET_DIR = STATE_DIR / "kubelet"
# The kubelet's device-plugins directory: fixed by the kubelet whatever its --root-dir (so
# /var/lib/kubelet is among the host paths k8s-down removes when k8s-up created it).
DEVICE_PLUGIN_DIR = Path("/var/lib/kubelet/device-plugins")
CNI_BIN_DIR = Path("/usr/lib/cni")

IMAGE_PREFIX = "localhost/servoscope"
# The node's own images (pause, CoreDNS), apart from the project's.
NODE_IMAGES = "localhost/servoscope-node"


@functools.cache
def tool_env() -> dict[str, str]:
    """What ``tools/kubernetes.sh env`` prints: KUBE_BIN, KUBERNETES_VERSION, PAUSE_BINARY..."""
    out = subprocess.run(
        [str(REPO_ROOT / "tools" / "kubernetes.sh"), "env"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    # Lines of NAME='value', quoted for the shell's eval.
    return {
        name: shlex.split(value)[0] for name, value in (ln.split("=", 1) for ln in out.splitlines())
    }


def binary(name: str) -> str:
    """The cached binary of a Kubernetes tool (built by tools/kubernetes.sh)."""
    return str(Path(tool_env()["KUBE_BIN"]) / name)
