"""The gateway's pods replaced under steady load lose no request.

A rolling update (``kubectl rollout restart``) while locust runs its ``rollout`` profile
(headless, bounded, through the loopback port-forward) must end with not one failed request:
the new pod takes traffic only once ready, the old one leaves the Service's endpoints, waits
in preStop until kube-proxy has noticed, then gunicorn finishes what is in flight. A gateway
pod deleted under the same load loses nothing a client's single retry does not cover.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos import routes, traffic
from deploy.cluster import release
from loadtests.profiles import get_profile
from loadtests.verdict import read_stats
from servoscope.settings import REPO_ROOT
from stack.ephemeral import DEV_KEY, Stack
from tests.kubernetes.conftest import kubectl
from tests.kubernetes.test_release import pods

pytestmark = pytest.mark.timeout(300)

PROFILE = "rollout"
WARMUP_S = 8  # every locust user spawned and answered before the pods change
DEPLOYMENT = f"deployment/{release.service('gateway')}"


class SteadyLoad:
    """``python -m loadtests run --profile rollout`` against the cluster's gateway."""

    def __init__(self, stack: Stack, results: Path) -> None:
        self.results = results
        self.process = subprocess.Popen(
            [sys.executable, "-m", "loadtests", "run", "--profile", PROFILE,
             "--host", stack.url("gateway"), "--results", str(results)],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.started = time.monotonic()

    def remaining_s(self) -> float:
        return get_profile(PROFILE).duration_s - (time.monotonic() - self.started)

    def finish(self) -> tuple[int, str, str]:
        """Waits for the run's end: its exit status, its output, and locust's failures."""
        output, _ = self.process.communicate(timeout=get_profile(PROFILE).duration_s + 150)
        failures = "".join(p.read_text() for p in self.results.glob("*/locust_failures.csv"))
        return self.process.returncode, output, failures

    def requests(self) -> int:
        stats = next(self.results.glob("*/locust_stats.csv"))
        return read_stats(stats)["all"].requests


@pytest.fixture
def load(k8s_stack: Stack, tmp_path: Path) -> Iterator[SteadyLoad]:
    running = SteadyLoad(k8s_stack, tmp_path)
    time.sleep(WARMUP_S)
    assert running.process.poll() is None, running.process.communicate()[0]
    yield running
    if running.process.poll() is None:
        running.process.kill()  # only if the test failed before the run ended
        running.process.wait()


def gateway_pods() -> set[str]:
    return {p["metadata"]["name"] for p in pods("gateway")}


def test_a_rolling_update_of_the_gateway_under_load_fails_no_request(load: SteadyLoad) -> None:
    before = gateway_pods()
    kubectl("-n", release.NAMESPACE, "rollout", "restart", DEPLOYMENT)
    kubectl("-n", release.NAMESPACE, "rollout", "status", DEPLOYMENT, "--timeout=120s",
            timeout=130)  # fmt: skip
    assert load.remaining_s() > 3, "the rollout outlasted the load: lengthen the profile"
    code, output, failures = load.finish()
    assert code == 0, f"{output}\n{failures}"
    after = gateway_pods()
    assert len(after) == 2 and not after & before, (before, after)
    assert load.requests() > 100, output


def test_a_gateway_pod_deleted_under_load_loses_nothing_one_retry_does_not_cover(
    load: SteadyLoad, k8s_stack: Stack
) -> None:
    # Beside locust: reads, each retried once when it gets no answer or a 5xx.
    stop, first_failures, lost, sent = threading.Event(), [], [], [0]
    probe_routes = routes.lookup(["current-angle", "state"])

    def probe() -> None:
        while not stop.is_set():
            for route in probe_routes:
                sent[0] += 1
                answer = traffic.send(k8s_stack.url("gateway"), DEV_KEY, route, timeout_s=5)
                if answer.status == 0 or answer.status >= 500:
                    first_failures.append(answer)
                    retried = traffic.send(k8s_stack.url("gateway"), DEV_KEY, route, timeout_s=5)
                    if retried.status != 200:
                        lost.append(retried)
            stop.wait(0.1)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    victim = sorted(gateway_pods())[0]
    kubectl("-n", release.NAMESPACE, "delete", "pod", victim, "--wait=true", timeout=60)
    kubectl("-n", release.NAMESPACE, "rollout", "status", DEPLOYMENT, "--timeout=90s",
            timeout=100)  # fmt: skip
    code, output, failures = load.finish()
    stop.set()
    prober.join(timeout=15)
    assert victim not in gateway_pods()
    assert sent[0] > 50, sent
    assert not lost, f"lost after one retry: {lost}; first tries failed: {len(first_failures)}"
    assert code == 0, f"{output}\n{failures}"
