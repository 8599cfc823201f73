"""The cluster's network namespace: created with its interfaces at k8s-up, deleted at k8s-down.

It holds loopback, the node's address on an interface that leads nowhere (with the Service
range routed to it, so clients in the namespace can reach ClusterIPs), and later the pod
bridge the CNI plugin adds. There is no default route and no link to the host: nothing in it
can reach the machine's own interfaces or anything beyond them.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import threading
from collections.abc import Callable
from typing import TypeVar

from deploy.cluster.layout import NETNS, NETNS_PATH, NODE_INTERFACE, NODE_IP, SERVICE_CIDR

T = TypeVar("T")
CLONE_NEWNET = 0x40000000


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def exists() -> bool:
    return NETNS_PATH.exists()


def create() -> None:
    _ip("netns", "add", NETNS)
    inside = ("-n", NETNS)
    _ip(*inside, "link", "set", "lo", "up")
    # A bridge with no ports stands for a dummy interface (some kernels lack the dummy driver):
    # it holds the node's address and leads nowhere.
    _ip(*inside, "link", "add", NODE_INTERFACE, "type", "bridge")
    _ip(*inside, "addr", "add", f"{NODE_IP}/32", "dev", NODE_INTERFACE)
    _ip(*inside, "link", "set", NODE_INTERFACE, "up")
    _ip(*inside, "route", "add", SERVICE_CIDR, "dev", NODE_INTERFACE)
    # Routing between the pod bridge and the node's address, inside this namespace only.
    _ip("netns", "exec", NETNS, "sysctl", "-qw", "net.ipv4.ip_forward=1")


def delete() -> None:
    if exists():
        _ip("netns", "delete", NETNS)


def enter_argv() -> list[str]:
    """Prefix that runs a command in the namespace, keeping the host's mount namespace (the
    kubelet and containerd must see each other's mounts, which `ip netns exec` would not)."""
    return ["nsenter", f"--net={NETNS_PATH}", "--"]


_libc = ctypes.CDLL(None, use_errno=True)


def call_inside(function: Callable[[], T]) -> T:
    """Runs ``function`` on a thread that has joined the namespace, and returns its result.

    Sockets opened there belong to the namespace: that is how this process reaches the node's
    addresses and ClusterIPs without routing anything through the host.
    """
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            join_this_thread()
            outcome["value"] = function()
        except BaseException as exc:  # handed back to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=f"in-{NETNS}")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def join_this_thread() -> None:
    """Moves the calling thread into the namespace for good (a thread that serves in it)."""
    fd = os.open(NETNS_PATH, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns({NETNS_PATH}): {os.strerror(errno)}")
    finally:
        os.close(fd)
