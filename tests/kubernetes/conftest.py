"""Fixtures of the Kubernetes tests: a sealed single-node cluster (make k8s-up) for them all.

It is stopped once the last of them has run (package scope), so the tests after them (the
local chaos suite among them) do not share the machine with an idle cluster.

They need root (a network namespace, mounts, cgroups). Without root they are skipped and say
why; CI sets SERVOSCOPE_REQUIRE_K8S=1 (in .ci/run), which turns that skip into a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from deploy.cluster import lifecycle, release
from servoscope.settings import REPO_ROOT, env_name, load
from stack.ephemeral import Stack

REQUIRE = "SERVOSCOPE_REQUIRE_K8S"


def require_root() -> None:
    if os.geteuid() == 0:
        return
    reason = (
        "the Kubernetes tests need root (they create a network namespace, mounts and "
        "cgroups): run them as root, e.g. `sudo make k8s-e2e`"
    )
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"{reason}; {REQUIRE}=1 forbids skipping them", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _root() -> None:
    require_root()


def make(target: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    """Runs a README make target; raises with its output when it fails."""
    result = subprocess.run(
        ["make", "--no-print-directory", target],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"make {target} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="package")
def cluster() -> Iterator[None]:
    """One running cluster for these tests; stopped (make k8s-down) after the last, unless
    SERVOSCOPE_K8S_KEEP=1 (while working on these tests: the next run reuses it)."""
    require_root()
    make("k8s-up")
    yield
    if os.environ.get("SERVOSCOPE_K8S_KEEP") != "1":
        make("k8s-down")


@pytest.fixture(scope="package")
def installed(cluster: None) -> str:
    """The chart installed once with the README's ``make k8s-install`` (offline +
    simulator values); what it printed (the seconds the import and the install took)."""
    return make("k8s-install", timeout=release.INSTALL_TIMEOUT_S + 300).stdout


@pytest.fixture(scope="package")
def k8s_stack(installed: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The release seen as the local stack is: a :class:`Stack` whose gateway, Prometheus,
    Jaeger and simulator URLs are loopback port-forwards into the cluster's Services, so the
    system tests' checks run on it unchanged."""
    forwards = release.forwards()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVOSCOPE_")}
    for name, forward in forwards.items():
        env[env_name("ports", name)] = str(forward.port)
        forward.__enter__()
    try:
        yield Stack(load(env), env, tmp_path_factory.mktemp("k8s-stack"))
    finally:
        for forward in forwards.values():
            forward.close()


def kubectl(*args: str, check: bool = True, timeout: float = 180) -> str:
    result = lifecycle.kubectl(*args, check=False, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def apply(manifest: str) -> None:
    result = subprocess.run(
        [*lifecycle.kubectl_argv(), "apply", "-f", "-"],
        input=manifest,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def wait_for_pod_end(namespace: str, name: str, timeout_s: float = 90) -> tuple[str, str]:
    """Waits until a run-once pod has finished; returns its phase and its log."""
    deadline = time.monotonic() + timeout_s
    phase = "Pending"
    while time.monotonic() < deadline:
        pod = json.loads(kubectl("-n", namespace, "get", "pod", name, "-o", "json"))
        phase = pod["status"].get("phase", "Pending")
        if phase in ("Succeeded", "Failed"):
            return phase, kubectl("-n", namespace, "logs", name)
        time.sleep(0.5)
    described = kubectl("-n", namespace, "describe", "pod", name, check=False)
    raise AssertionError(f"pod {namespace}/{name} still {phase} after {timeout_s}s:\n{described}")
