"""A pod cannot reach any address outside the cluster's network namespace: not the host's own
addresses, not its gateway, not the internet; the same probe does reach the API server inside."""

from __future__ import annotations

import json
import subprocess

import pytest

from deploy.cluster import images, layout
from tests.kubernetes.conftest import apply, kubectl, wait_for_pod_end

NAMESPACE = "servoscope-seal"
# A Debian base image with bash, whose /dev/tcp opens a TCP connection.
PROBE_IMAGE = "localhost/servoscope/debian:bookworm"
PROBE = r"""
for target in "$@"; do
  host=${target%:*}; port=${target##*:}
  if out=$(timeout 3 bash -c "exec 3<>/dev/tcp/$host/$port" 2>&1); then
    echo "$target connected"
  else
    echo "$target failed: ${out:-timed out}"
  fi
done
if getent hosts pypi.org >/dev/null; then echo "pypi.org resolved"; else echo "pypi.org failed"; fi
"""


def _host_targets() -> list[str]:
    """Every address of the host's own interfaces, and its gateways, with a port to try."""
    targets = ["1.1.1.1:443", "8.8.8.8:53", "[2606:4700:4700::1111]:443"]
    for link in json.loads(
        subprocess.run(["ip", "-j", "address"], capture_output=True, check=True).stdout
    ):
        for address in link.get("addr_info", []):
            if address.get("scope") == "global":
                targets.append(f"{address['local']}:22")
    for family in ("-4", "-6"):
        routes = subprocess.run(
            ["ip", "-j", family, "route"], capture_output=True, check=True
        ).stdout
        targets += [f"{r['gateway']}:80" for r in json.loads(routes) if "gateway" in r]
    return [t.replace("[", "").replace("]", "") for t in targets]


@pytest.fixture(scope="module")
def namespace(cluster: None) -> str:
    images.load([PROBE_IMAGE])
    kubectl("create", "namespace", NAMESPACE)
    kubectl("label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted")
    yield NAMESPACE
    kubectl("delete", "namespace", NAMESPACE, "--wait=false")


def test_a_pod_reaches_nothing_outside_the_namespace(namespace: str) -> None:
    outside = _host_targets()
    inside = [f"{layout.NODE_IP}:{layout.API_PORT}", f"{layout.API_SERVICE_IP}:443"]
    apply(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "probe", "namespace": namespace},
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65534,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "probe",
                            "image": PROBE_IMAGE,
                            "imagePullPolicy": "Never",
                            "command": ["bash", "-c", PROBE, "probe", *inside, *outside],
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                },
            }
        )
    )
    phase, log = wait_for_pod_end(namespace, "probe")
    assert phase == "Succeeded", log
    lines = dict(line.split(" ", 1) for line in log.splitlines())
    for target in inside:  # the probe itself works
        assert lines[target] == "connected", log
    for target in outside:
        assert lines[target].startswith("failed"), log
    assert lines["pypi.org"] == "failed", log
