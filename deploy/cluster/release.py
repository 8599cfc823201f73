"""The chart on the running cluster: ``python -m deploy.cluster install|uninstall|forward``.

``install`` labels the node as the one with the servo bus, moves every image the chart names
from podman into the node's containerd (no registry is reachable), and runs
``helm upgrade --install --wait`` with the offline and simulator values: the gateway with two
replicas sharing its state in Redis, the Maestro simulator in a pod of its own. Helm and
kubectl run inside the cluster's namespace, where the API server's address is. ``forward``
(make k8s-forward) relays loopback ports to the release's Services until Ctrl-C;
``api_access`` relays one to the API server, with a kubeconfig for it, for a client on the host.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from deploy.cluster import images, layout, lifecycle, netns, pki
from deploy.cluster.forward import Forward
from servoscope.settings import REPO_ROOT
from stack.supervisor import say

CHART = REPO_ROOT / "deploy" / "helm" / "servoscope"
RELEASE = "servoscope"
NAMESPACE = "servoscope"
OFFLINE_VALUES = (CHART / "ci" / "offline-values.yaml", CHART / "ci" / "simulator-values.yaml")
SERVO_BUS_LABEL = "servoscope.dev/servo-bus=true"
INSTALL_TIMEOUT_S = 300
# What a port-forward on the host's loopback reaches: servoscope.toml's [ports] name -> the
# chart's component and its Service port.
SERVICE_PORTS = {
    "gateway": ("gateway", 8080),
    "prometheus": ("prometheus", 9090),
    "jaeger_ui": ("jaeger", 16686),
    "simulator_control": ("simulator", 8109),
    "telemetry": ("telemetry-logger", 8103),
}


def helm(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """helm against the cluster, from inside its namespace; its caches under the state dir."""
    home = layout.STATE_DIR / "helm"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),  # kubectl's discovery cache goes under $HOME/.kube
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "KUBECONFIG": str(layout.KUBECONFIG),
    }
    argv = [*netns.enter_argv(), layout.binary("helm"), *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if result.returncode != 0:
        raise lifecycle.ClusterError(f"helm {' '.join(args)}:\n{result.stderr.strip()}")
    return result


def _values_args(values: tuple[Path, ...]) -> list[str]:
    return [arg for path in values for arg in ("-f", str(path))]


def chart_images(values: tuple[Path, ...] = OFFLINE_VALUES) -> list[str]:
    """Every image the chart renders with ``values``, as the kubelet will ask for it."""
    rendered = helm("template", RELEASE, str(CHART), "-n", NAMESPACE, *_values_args(values))
    return sorted(set(re.findall(r"^\s+image:\s*\"?([^\s\"]+)", rendered.stdout, re.M)))


def install(values: tuple[Path, ...] = OFFLINE_VALUES, *extra: str) -> float:
    """Installs (or upgrades) the release and waits for every pod; returns the seconds taken."""
    lifecycle.kubectl("label", "node", layout.NODE_NAME, SERVO_BUS_LABEL, "--overwrite")
    started = time.monotonic()
    images.load(chart_images(values))
    loaded = time.monotonic()
    helm(
        "upgrade", "--install", RELEASE, str(CHART), "--namespace", NAMESPACE,
        "--create-namespace", "--wait", f"--timeout={INSTALL_TIMEOUT_S}s",
        *_values_args(values), *extra, timeout=INSTALL_TIMEOUT_S + 30,
    )  # fmt: skip
    # helm's --wait has been seen returning while an upgrade's new pods were still rolling in.
    lifecycle.kubectl(
        "-n", NAMESPACE, "rollout", "status", "deployment,daemonset,statefulset",
        "-l", f"app.kubernetes.io/instance={RELEASE}", f"--timeout={INSTALL_TIMEOUT_S}s",
        timeout=INSTALL_TIMEOUT_S + 30,
    )  # fmt: skip
    done = time.monotonic()
    say(
        f"release {RELEASE} ready in namespace {NAMESPACE}: images imported in "
        f"{loaded - started:.0f}s, helm install --wait {done - loaded:.0f}s"
    )
    return done - loaded


def uninstall() -> None:
    helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", timeout=180)


def service(component: str) -> str:
    """The Service of one of the chart's components, e.g. ``gateway``."""
    return f"{RELEASE}-{component}"  # the chart's fullname is the release's own name


def cluster_ip(component: str) -> str:
    return lifecycle.kubectl(
        "-n", NAMESPACE, "get", "service", service(component), "-o", "jsonpath={.spec.clusterIP}"
    ).stdout.strip()


def forwards() -> dict[str, Forward]:
    """A port-forward (not yet started) from a free loopback port to each of SERVICE_PORTS."""
    return {
        name: Forward(cluster_ip(component), port)
        for name, (component, port) in SERVICE_PORTS.items()
    }


def host_access(directory: Path, port: int) -> dict[str, str]:
    """The environment a client on the host (chaostoolkit-kubernetes, the kubernetes Python
    client) reads to reach the API server on loopback ``port``: ``KUBECONFIG``, a kubeconfig
    written in ``directory`` with the cluster's admin credentials (the API server's certificate
    names 127.0.0.1), and no proxy for loopback, so that a proxy set in the environment never
    carries the API's traffic off the machine."""
    kubeconfig = directory / "host.kubeconfig"
    pki.write_kubeconfig(kubeconfig, f"https://127.0.0.1:{port}")
    return {"KUBECONFIG": str(kubeconfig), "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}


@contextlib.contextmanager
def api_access(directory: Path) -> Iterator[dict[str, str]]:
    """:func:`host_access` through a loopback port-forward to the API server, open while the
    block runs."""
    with Forward(layout.NODE_IP, layout.API_PORT) as port:
        yield host_access(directory, port)


def serve_forwards() -> None:
    """Forwards every one of SERVICE_PORTS until SIGINT or SIGTERM (make k8s-forward)."""
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    running = forwards()
    for name, forward in running.items():
        forward.__enter__()
        print(f"{name}: http://127.0.0.1:{forward.port}", flush=True)
    say("forwarding into the cluster until Ctrl-C")
    stop.wait()
    for forward in running.values():
        forward.close()
