"""The hold and the heal of the Kubernetes pod kill: what chaostoolkit-kubernetes has no action for.

The kill itself is chaosk8s's ``terminate_pods`` (force deletion, grace period 0: the pod's
containers get SIGKILL). The local suite's ``kill_process`` holds a killed process down until
``restart_process`` lets the supervisor start it again; here the DaemonSet is the supervisor
and the hold is its node selector. :func:`hold_off` takes the node's label off before the kill,
so the DaemonSet does not replace the pod at once; :func:`bring_back` puts the label back and
returns once the DaemonSet's new pod is ready.

Both reach the API server the way chaosk8s does, through its ``create_k8s_api_client`` (the
kubeconfig that ``KUBECONFIG`` names; deploy.cluster.release.api_access writes one for a
loopback port-forward into the cluster's namespace).
"""

from __future__ import annotations

import time

from chaosk8s import create_k8s_api_client
from kubernetes import client
from kubernetes.client import V1Pod


def _core(secrets: dict | None) -> client.CoreV1Api:
    return client.CoreV1Api(create_k8s_api_client(secrets))


def _label(core: client.CoreV1Api, node: str, key: str, value: str | None) -> None:
    # A null value in the patch removes the label.
    core.patch_node(node, {"metadata": {"labels": {key: value}}})


def _ready(pod: V1Pod) -> bool:
    if pod.metadata.deletion_timestamp:
        return False
    conditions = pod.status.conditions or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def hold_off(node: str, label: str, secrets: dict | None = None) -> str:
    """Takes ``label`` (``key=value``, a DaemonSet's node selector) off ``node``, so that the
    DaemonSet keeps no pod there; returns the node's name."""
    _label(_core(secrets), node, label.split("=", 1)[0], None)
    return node


def bring_back(
    namespace: str,
    selector: str,
    node: str,
    label: str,
    timeout_s: float = 60.0,
    secrets: dict | None = None,
) -> float:
    """Puts ``label`` back on ``node``; returns the seconds until a pod that ``selector`` picks
    in ``namespace`` (the DaemonSet's new one) was ready.

    chaosk8s's ``daemon_set_fully_available`` does not do for this wait: right after the label
    returns the DaemonSet still wants 0 pods and has 0 ready, which it takes for fully
    available, and when time runs out it answers False instead of failing the activity.
    """
    core = _core(secrets)
    _label(core, node, *label.split("=", 1))
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        pods = core.list_namespaced_pod(namespace, label_selector=selector).items
        if any(_ready(pod) for pod in pods):
            return round(time.monotonic() - started, 2)
        time.sleep(0.25)
    raise RuntimeError(f"no ready pod for {selector} within {timeout_s}s of the label's return")
