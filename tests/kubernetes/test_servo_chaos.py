"""Chaos on Kubernetes: the servo controller's pod killed under load (Chaos Toolkit with
chaostoolkit-kubernetes, chaos/experiments/kubernetes/servo-pod-kill.yaml), judged from its
journal by the local suite's own runner and judge, with a control run whose gateway has its
breaker off. Chaos Toolkit reaches the API server through a loopback port-forward
(release.api_access).

Each run starts from a fresh simulator (its log of targets is what proves no command was
applied twice). The control run's route table is the local suite's (``route_table`` with the
breaker off), handed to the chart with ``--set-file gateway.routes``: the gateway rolls.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from chaos import runner
from deploy.cluster import layout, release
from stack.ephemeral import Stack, wait_for
from tests.kubernetes.conftest import kubectl

pytestmark = pytest.mark.timeout(600)

EXPERIMENT = runner.load(runner.EXPERIMENTS_DIR / "kubernetes" / "servo-pod-kill.yaml")
SIMULATOR = f"deployment/{release.service('simulator')}"
K8S_ENV = {
    "CHAOS_K8S_NAMESPACE": release.NAMESPACE,
    "CHAOS_K8S_SERVO_SELECTOR": "app.kubernetes.io/component=servo-controller",
    "CHAOS_K8S_SERVO_NODE": layout.NODE_NAME,
    "CHAOS_K8S_SERVO_NODE_LABEL": release.SERVO_BUS_LABEL,
}


def fresh_simulator(stack: Stack) -> None:
    kubectl("-n", release.NAMESPACE, "rollout", "restart", SIMULATOR)
    kubectl("-n", release.NAMESPACE, "rollout", "status", SIMULATOR, "--timeout=90s", timeout=100)

    # Until the servo controller has reconnected, its routes answer 503 (or the stale angle):
    # the steady state (every route answers) would not hold before the fault. The command
    # goes to channel 0: the experiment's own channel must see only its own commands.
    def servo_answers() -> bool:
        moved = stack.api("POST", "/api/servo/set-position", body='{"channel":0,"angle":90}')
        read = stack.api("GET", "/api/servo/current-angle?channel=0")
        return moved.status == read.status == 200 and not read.json().get("stale")

    wait_for(servo_answers, timeout=60, interval=0.5, message="the servo on the new simulator")


@pytest.fixture(scope="module")
def outcomes(k8s_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> list[runner.Outcome]:
    results = tmp_path_factory.mktemp("chaos-k8s")
    with release.api_access(results) as access:
        env = {**K8S_ENV, **access}
        fresh_simulator(k8s_stack)
        protected = runner.run_on(k8s_stack, EXPERIMENT, True, results, env=env)
        routes = results / "control-routes.yaml"
        routes.write_text(yaml.safe_dump(runner.route_table(EXPERIMENT, protected=False)))
        # The release keeps this table until the cluster stops: no test after this one needs it.
        release.install(release.OFFLINE_VALUES, "--set-file", f"gateway.routes={routes}")
        fresh_simulator(k8s_stack)
        control = runner.run_on(k8s_stack, EXPERIMENT, False, results, env=env)
    (results / "summary.md").write_text(runner.summary([protected, control]))
    return [protected, control]


def _explain(outcome: runner.Outcome) -> str:
    log = Path(str(outcome.journal).replace(".journal.json", ".log"))
    tail = log.read_text()[-3000:] if log.exists() else ""
    return f"{outcome.judgement.reasons}\njournal: {outcome.journal}\n{tail}"


def test_the_servo_routes_fail_fast_while_the_pod_is_gone_and_recover(
    outcomes: list[runner.Outcome],
) -> None:
    protected = outcomes[0]
    assert protected.judgement.passed, _explain(protected)
    assert protected.recovery_s is not None and protected.recovery_s <= 10


def test_without_the_breaker_the_same_kill_breaks_the_hypothesis(
    outcomes: list[runner.Outcome],
) -> None:
    assert runner.verdict(outcomes) == [], [_explain(o) for o in outcomes]
