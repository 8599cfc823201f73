"""The chart installed on the sealed node (offline + simulator values, two gateway replicas
sharing state in Redis) behaves as the local stack does: the README's curl lines through the
gateway Service, one set-position as one trace from a gateway pod down to the servo pod's
serial span in the in-cluster Jaeger, every pod a Prometheus target found by Kubernetes service
discovery and up, and every dashboard panel's query with data.

The checks are the local stack's own (tests/system), run on a :class:`Stack` whose URLs are
port-forwards into the cluster's Services (the ``k8s_stack`` fixture).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from deploy.cluster import release
from observability.grafana.queries import PanelQueries, provisioned_panels
from servoscope.settings import REPO_ROOT
from stack.ephemeral import DEV_KEY, Stack, http, wait_for
from stack.traffic import rated_traffic
from tests.deploy.traces import GATEWAY_TO_SERIAL, span_names
from tests.kubernetes.conftest import kubectl
from tests.system.test_dashboards import check_panel_has_data
from tests.system.test_readme import check_readme_curl_commands

PANELS = provisioned_panels()


def pods(component: str | None = None) -> list[dict]:
    selector = [f"-l=app.kubernetes.io/component={component}"] if component else []
    listed = kubectl("-n", release.NAMESPACE, "get", "pods", *selector, "-o", "json")
    return [p for p in json.loads(listed)["items"] if p["status"].get("phase") == "Running"]


def test_two_gateway_pods_share_state_in_redis(k8s_stack: Stack) -> None:
    gateways = pods("gateway")
    assert len(gateways) == 2, [p["metadata"]["name"] for p in gateways]
    env = {e["name"]: e.get("value") for e in gateways[0]["spec"]["containers"][0]["env"]}
    assert env["SERVOSCOPE_GATEWAY_SHARED_STATE"] == "redis"


def test_the_readme_curl_lines_through_the_gateway_service(k8s_stack: Stack) -> None:
    wait_for(
        lambda: k8s_stack.api("GET", "/api/servo/status").status == 200,
        timeout=60, interval=1, message="the servo controller connected to the simulator",
    )  # fmt: skip
    check_readme_curl_commands(
        lambda command: subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, timeout=30
        ),
        k8s_stack.url("gateway").removeprefix("http://"),
    )


def test_one_set_position_is_one_trace_from_a_gateway_pod_to_the_serial_span(
    k8s_stack: Stack,
) -> None:
    reply = k8s_stack.api("POST", "/api/servo/set-position", body='{"channel":0,"angle":75}')
    assert reply.status == 200, reply.body
    trace_id = reply.headers["X-Trace-Id"]

    def trace() -> dict | None:
        got = http("GET", f"{k8s_stack.url('jaeger_ui')}/api/traces/{trace_id}")
        if got.status != 200:
            return None
        found = got.json()["data"][0]
        return found if set(span_names(found)) >= GATEWAY_TO_SERIAL else None

    found = wait_for(trace, timeout=30, interval=0.5, message="the trace in the cluster's Jaeger")
    # Each span's process is a pod: its service.instance.id is <host name>:<pid>, and a pod's
    # host name is its own name.
    hosts = {
        process["serviceName"]: {t["value"].rsplit(":", 1)[0] for t in process.get("tags", [])
                                 if t["key"] == "service.instance.id"}
        for process in found["processes"].values()
    }  # fmt: skip
    gateway_pods = {p["metadata"]["name"] for p in pods("gateway")}
    servo_pods = {p["metadata"]["name"] for p in pods("servo-controller")}
    assert hosts["gateway"] & gateway_pods, (hosts, gateway_pods)
    assert hosts["servo-controller"] & servo_pods, (hosts, servo_pods)


def test_every_pod_is_a_prometheus_target_found_by_service_discovery_and_up(
    k8s_stack: Stack,
) -> None:
    # Each scraped pod as Prometheus names it: its job (the component), and the pod's name
    # (kubernetes_sd) or address (dns_sd, the offline values: Debian's Prometheus has no
    # kubernetes_sd, so it finds pods through headless Services in the cluster's DNS).
    scraped = {
        (p["metadata"]["labels"]["app.kubernetes.io/component"], p["status"]["podIP"]):
        p["metadata"]["name"]
        for p in pods()
        if p["metadata"].get("annotations", {}).get("prometheus.io/scrape") == "true"
    }  # fmt: skip
    assert len(scraped) >= 6, scraped  # gateway x2, servo, motion, state, telemetry

    def seen(target: dict) -> set[tuple[str, str]]:
        labels = target["labels"]
        by_name = {key for key, name in scraped.items() if labels.get("pod") == name}
        address = (labels["job"], labels["instance"].rsplit(":", 1)[0])
        return by_name | ({address} & set(scraped))

    def targets() -> list[dict] | None:
        got = http("GET", f"{k8s_stack.url('prometheus')}/api/v1/targets?state=active")
        active = got.json()["data"]["activeTargets"]
        up = set().union(*(seen(t) for t in active if t["health"] == "up"))
        return active if set(scraped) <= up else None

    active = wait_for(targets, timeout=60, interval=1, message="every pod a target, up")
    assert all(t["health"] == "up" for t in active), [
        (t["labels"], t["lastError"]) for t in active if t["health"] != "up"
    ]


@pytest.fixture(scope="module")
def busy_k8s_stack(k8s_stack: Stack) -> Stack:
    statuses = rated_traffic(k8s_stack, rounds=20)
    assert statuses.get(200) and statuses.get(422) and statuses.get(401), statuses
    return k8s_stack


@pytest.mark.parametrize("panel", PANELS, ids=[panel.key for panel in PANELS])
def test_every_dashboard_panel_query_has_data(busy_k8s_stack: Stack, panel: PanelQueries) -> None:
    check_panel_has_data(busy_k8s_stack, panel)


def test_make_k8s_forward_prints_loopback_urls_that_reach_the_release(k8s_stack: Stack) -> None:
    process = subprocess.Popen(
        ["make", "--no-print-directory", "k8s-forward"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        urls = dict(process.stdout.readline().strip().split(": ", 1) for _ in release.SERVICE_PORTS)
        assert set(urls) == set(release.SERVICE_PORTS), urls
        assert all(url.startswith("http://127.0.0.1:") for url in urls.values()), urls
        reply = http(
            "GET", f"{urls['gateway']}/api/servo/current-angle?channel=0",
            headers={"Authorization": f"Bearer {DEV_KEY}"},
        )  # fmt: skip
        assert reply.status == 200 and reply.json()["channel"] == 0, reply.body
        assert http("GET", f"{urls['prometheus']}/-/ready").status == 200
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: make and the forwarder end
        process.wait(timeout=15)


def test_redis_keeps_the_telemetry_streams_when_its_server_restarts(k8s_stack: Stack) -> None:
    """The streams hold samples no logger has stored yet: Redis's append-only file (on the
    pod's emptyDir) brings them back after a stop that saves nothing else (SHUTDOWN NOSAVE;
    without the file, and with no snapshot configured, the stream would come back empty)."""
    redis = f"deployment/{release.service('redis')}"
    stream, marker = "servoscope:test:persistence", f"kept-{time.time_ns()}"

    def cli(*args: str, check: bool = True) -> str:
        return kubectl(
            "-n", release.NAMESPACE, "exec", redis, "--", "redis-cli", *args, check=check
        ).strip()  # fmt: skip

    def restarts() -> int:
        [pod] = pods("redis")
        return sum(c["restartCount"] for c in pod["status"]["containerStatuses"])

    before = restarts()
    cli("XADD", stream, "*", "marker", marker)
    time.sleep(1.5)  # appendfsync everysec: the entry is on disk within a second
    cli("SHUTDOWN", "NOSAVE", check=False)  # the server goes, and the connection with it
    wait_for(
        lambda: pods("redis") and restarts() > before and cli("PING", check=False) == "PONG",
        timeout=90, interval=1, message="redis restarted in its pod",
    )  # fmt: skip
    try:
        assert marker in cli("XRANGE", stream, "-", "+")
    finally:
        cli("DEL", stream, check=False)
