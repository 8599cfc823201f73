"""Chaos Toolkit actions against the sealed cluster of ``make k8s-up``: kill a DaemonSet's pod
and let the DaemonSet bring it back.

The local suite's ``kill_process`` holds a killed process down until ``restart_process``
lets the supervisor start it again. Here the DaemonSet is the supervisor, and the hold is its
node selector: the node's label comes off first (so the controller does not replace the pod at
once), then the pod is force-deleted (grace period 0: its containers get SIGKILL). Putting the
label back is the heal: the DaemonSet schedules a new pod, and the action returns once it is
ready. kubectl runs inside the cluster's network namespace (deploy.cluster).
"""

from __future__ import annotations

import json
import time

from deploy.cluster import layout, lifecycle


def _pods(namespace: str, selector: str) -> list[dict]:
    listed = lifecycle.kubectl("-n", namespace, "get", "pods", "-l", selector, "-o", "json")
    return json.loads(listed.stdout)["items"]


def _ready(pod: dict) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = pod["status"].get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def kill_pod(namespace: str, selector: str, node_label: str) -> list[str]:
    """Takes ``node_label`` (``key=value``) off the node, then SIGKILLs the pods ``selector``
    picks (force deletion, grace period 0); returns their names."""
    key = node_label.split("=", 1)[0]
    lifecycle.kubectl("label", "node", layout.NODE_NAME, f"{key}-")
    names = [pod["metadata"]["name"] for pod in _pods(namespace, selector)]
    if names:
        lifecycle.kubectl(
            "-n", namespace, "delete", "pod", *names, "--grace-period=0", "--force", "--wait=false"
        )
    return names


def restore_pod(namespace: str, selector: str, node_label: str, timeout_s: float = 60.0) -> float:
    """Puts ``node_label`` back on the node; returns the seconds until the DaemonSet's new pod
    was ready."""
    lifecycle.kubectl("label", "node", layout.NODE_NAME, node_label, "--overwrite")
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if any(_ready(pod) for pod in _pods(namespace, selector)):
            return round(time.monotonic() - started, 2)
        time.sleep(0.25)
    raise RuntimeError(f"no ready pod for {selector} within {timeout_s}s of the label's return")
