"""The servo bus's device plugin hands a character device to an unprivileged pod that asks for
servoscope.dev/maestro; the same pod given the device as a hostPath instead cannot open it.

The stand-in device is a node made for the test with the numbers of /dev/fuse (a character
device outside a container's default device list) and a serial port's mode, 0660 root:dialout,
so file permissions allow the pod's group and only the device cgroup can refuse it.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.cluster import images, layout
from tests.kubernetes.conftest import apply, kubectl, wait_for_pod_end

NAMESPACE = "servoscope-device"
RESOURCE = "servoscope.dev/maestro"
DIALOUT_GID = 20
IN_CONTAINER = "/dev/ttyACM0"


@pytest.fixture(scope="module")
def stand_in() -> Iterator[Path]:
    fuse = os.stat("/dev/fuse")
    directory = Path(tempfile.mkdtemp(prefix="servoscope-bus-"))
    device = directory / "ttyACM0"
    os.mknod(device, 0o660 | stat.S_IFCHR, fuse.st_rdev)
    os.chown(device, 0, DIALOUT_GID)
    device.chmod(0o660)  # mknod's mode went through the umask (0640: the group could not write)
    directory.chmod(0o755)
    yield device
    device.unlink()
    directory.rmdir()


def _pod(name: str, image: str, spec: dict[str, object], container: dict[str, object]) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"restartPolicy": "Never", **spec,
                     "containers": [{"name": name, "image": image, "imagePullPolicy": "Never",
                                     **container}]},
        }
    )  # fmt: skip


UNPRIVILEGED = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
SERVO_USER = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "supplementalGroups": [DIALOUT_GID],
    "seccompProfile": {"type": "RuntimeDefault"},
}


@pytest.fixture(scope="module")
def plugin(cluster: None, stand_in: Path) -> Iterator[str]:
    image = images.device_plugin_image()
    images.load([image])
    kubectl("create", "namespace", NAMESPACE)
    # The plugin itself mounts the kubelet's device-plugins directory: privileged namespace level.
    kubectl("label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=privileged")
    plugin_dir = str(layout.DEVICE_PLUGIN_DIR)
    apply(
        _pod(
            "device-plugin",
            image,
            {
                "volumes": [
                    {"name": "plugins", "hostPath": {"path": plugin_dir, "type": "Directory"}},
                    {
                        "name": "bus",
                        "hostPath": {"path": str(stand_in.parent), "type": "Directory"},
                    },
                ]
            },
            {
                "args": ["-device", f"{stand_in}:{IN_CONTAINER}", "-kubelet-dir", plugin_dir],
                "securityContext": UNPRIVILEGED,
                "volumeMounts": [
                    {"name": "plugins", "mountPath": plugin_dir},
                    {"name": "bus", "mountPath": str(stand_in.parent), "readOnly": True},
                ],
            },
        ).replace('"restartPolicy": "Never"', '"restartPolicy": "Always"')
    )
    kubectl("-n", NAMESPACE, "wait", "pod/device-plugin", "--for=condition=Ready", "--timeout=60s")
    _wait_for_allocatable()  # a pod asking for the resource before then is refused admission
    yield image
    kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=60s", check=False)


def _wait_for_allocatable(timeout_s: float = 30) -> dict[str, str]:
    deadline, allocatable = time.monotonic() + timeout_s, {}
    while allocatable.get(RESOURCE) != "1" and time.monotonic() < deadline:
        node = json.loads(kubectl("get", "node", layout.NODE_NAME, "-o", "json"))
        allocatable = node["status"]["allocatable"]
        time.sleep(1)  # the kubelet reports a new resource with its next node status
    return allocatable


def test_node_advertises_one_maestro(plugin: str) -> None:
    allocatable = _wait_for_allocatable()
    assert allocatable.get(RESOURCE) == "1", allocatable


def test_unprivileged_pod_opens_the_device_through_the_plugin(plugin: str) -> None:
    apply(
        _pod(
            "with-plugin",
            plugin,
            {"securityContext": SERVO_USER},
            {
                "args": ["check", IN_CONTAINER],
                "securityContext": UNPRIVILEGED,
                "resources": {"limits": {RESOURCE: "1"}},
            },
        )
    )
    phase, log = wait_for_pod_end(NAMESPACE, "with-plugin")
    assert (phase, log.strip()) == ("Succeeded", f"opened {IN_CONTAINER}")


def test_the_same_pod_cannot_open_it_as_a_host_path(plugin: str, stand_in: Path) -> None:
    apply(
        _pod(
            "host-path",
            plugin,
            {
                "securityContext": SERVO_USER,
                "volumes": [
                    {"name": "bus", "hostPath": {"path": str(stand_in), "type": "CharDevice"}}
                ],
            },
            {
                "args": ["check", IN_CONTAINER],
                "securityContext": UNPRIVILEGED,
                "volumeMounts": [{"name": "bus", "mountPath": IN_CONTAINER}],
            },
        )
    )
    phase, log = wait_for_pod_end(NAMESPACE, "host-path")
    assert phase == "Failed"
    assert "operation not permitted" in log, log
