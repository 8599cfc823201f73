"""The gateway's resilience decisions in Jaeger: real Jaeger, a traced upstream built
on servoscope's app factory, and the gateway, each a real process.

(b) a request retried after an upstream 503, (c) one refused by an open breaker.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from servoscope.settings import REPO_ROOT
from stack.components import JAEGER_ARGV, JAEGER_PORTS, jaeger_env
from stack.ephemeral import free_ports, http, terminate, wait_for
from tests.component.gatewayrig import Gateway, start_gateway

pytestmark = pytest.mark.system

ROUTES = """
defaults:
  retry: {{backoff_base_s: 0.01, backoff_max_s: 0.02}}
upstreams:
  traced: {{instances: ["{url}"]}}
  fragile: {{instances: ["{url}"], breaker: {{failures: 1, reset_s: 30.0}}}}
routes:
  traced:
    prefix: /t/traced
    upstream: traced
    operations: [{{method: GET, path: /flaky, scope: read}}]
  fragile:
    prefix: /t/fragile
    upstream: fragile
    policy: {{retry: {{enabled: false}}}}
    operations: [{{method: GET, path: /flaky, scope: read}}]
"""


@pytest.fixture(scope="module")
def jaeger(tmp_path_factory) -> Iterator[dict[str, int]]:
    ports = dict(zip(JAEGER_PORTS, free_ports(len(JAEGER_PORTS)), strict=True))
    env = {**os.environ, **jaeger_env("127.0.0.1", ports)}
    log = (tmp_path_factory.mktemp("jaeger") / "jaeger.log").open("wb")
    process = subprocess.Popen(
        JAEGER_ARGV,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def healthy() -> bool:
        try:
            return (
                http("GET", f"http://127.0.0.1:{ports['health']}/status", timeout=1).status == 200
            )
        except OSError:
            return False

    wait_for(healthy, timeout=30, message="jaeger")
    yield ports
    terminate(process)
    log.close()


@pytest.fixture(scope="module")
def upstream_url(tmp_path_factory, jaeger) -> Iterator[str]:
    (port,) = free_ports(1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVOSCOPE_")}
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        SERVOSCOPE_SERVICE="test-upstream",
        SERVOSCOPE_BIND=f"127.0.0.1:{port}",
        SERVOSCOPE_PORTS_JAEGER_OTLP_HTTP=str(jaeger["otlp_http"]),
    )
    log = (tmp_path_factory.mktemp("upstream") / "upstream.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:servoscope.gunicorn_conf",
         "tests.system.traced_upstream:create_app()"],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return http("GET", url + "/healthz", timeout=1).status == 200
        except OSError:
            return False

    wait_for(up, timeout=20, message="the traced upstream")
    yield url
    terminate(process)
    log.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, jaeger, upstream_url) -> Iterator[Gateway]:
    running = start_gateway(
        tmp_path_factory.mktemp("gateway"),
        ROUTES.format(url=upstream_url),
        jaeger_otlp_port=jaeger["otlp_http"],
    )
    yield running
    terminate(running.process)


class Trace:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.spans = data["spans"]
        self.by_id = {s["spanID"]: s for s in self.spans}

    def service(self, span) -> str:
        return self.data["processes"][span["processID"]]["serviceName"]

    @staticmethod
    def tags(span) -> dict[str, Any]:
        return {t["key"]: t["value"] for t in span["tags"]}

    def parent(self, span):
        refs = [r for r in span["references"] if r["refType"] == "CHILD_OF"]
        return self.by_id.get(refs[0]["spanID"]) if refs else None

    def find(self, service: str, kind: str) -> list:
        return [
            s
            for s in self.spans
            if self.service(s) == service and self.tags(s).get("span.kind") == kind
        ]


def fetch_trace(jaeger: dict[str, int], trace_id: str, want: int) -> Trace:
    def got() -> Trace | None:
        reply = http("GET", f"http://127.0.0.1:{jaeger['query']}/api/traces/{trace_id}")
        if reply.status != 200:
            return None
        found = Trace(reply.json()["data"][0])
        return found if len(found.spans) >= want else None

    return wait_for(got, timeout=15, interval=0.3, message=f"trace {trace_id} in Jaeger")


def test_a_retried_request_is_one_trace_with_an_attempt_per_client_span(
    gateway: Gateway, jaeger
) -> None:
    reply = gateway.api("GET", "/t/traced/flaky?tag=b&fail_first=1&status=503")
    assert reply.status == 200
    trace = fetch_trace(jaeger, reply.headers["X-Trace-Id"], want=5)

    (server,) = trace.find("gateway", "server")
    assert trace.parent(server) is None
    assert server["operationName"] == "GET /t/traced/flaky"
    events = [f["value"] for e in server["logs"] for f in e["fields"] if f["key"] == "event"]
    assert "gateway.retry" in events
    clients = sorted(trace.find("gateway", "client"), key=lambda s: s["startTime"])
    assert [trace.parent(c) for c in clients] == [server, server]
    first, second = (trace.tags(c) for c in clients)
    assert (first["gateway.retry.attempt"], second["gateway.retry.attempt"]) == (1, 2)
    assert (first["http.request.resend_count"], second["http.request.resend_count"]) == (0, 1)
    assert first["http.response.status_code"] == 503 and first["otel.status_code"] == "ERROR"
    assert second["http.response.status_code"] == 200 and "otel.status_code" not in second
    upstream_servers = trace.find("test-upstream", "server")
    assert sorted(trace.parent(s)["spanID"] for s in upstream_servers) == sorted(
        c["spanID"] for c in clients
    )


def test_a_request_refused_by_an_open_breaker_is_an_error_span_without_a_call(
    gateway: Gateway, jaeger
) -> None:
    assert gateway.api("GET", "/t/fragile/flaky?tag=c&fail_first=5&status=500").status == 500
    refused = gateway.api("GET", "/t/fragile/flaky?tag=c")
    assert refused.status == 503
    trace_id = refused.headers["X-Trace-Id"]
    assert refused.json()["trace_id"] == trace_id
    trace = fetch_trace(jaeger, trace_id, want=1)
    assert [trace.service(s) for s in trace.spans] == ["gateway"]  # no call went out
    (server,) = trace.spans
    tags = trace.tags(server)
    assert tags["gateway.breaker.state"] == "open"
    assert tags["otel.status_code"] == "ERROR"
    assert tags["http.response.status_code"] == 503
    events = [f["value"] for e in server["logs"] for f in e["fields"] if f["key"] == "event"]
    assert "gateway.breaker_rejected" in events


def test_problem_answers_carry_the_trace_id(gateway: Gateway) -> None:
    reply = gateway.api("GET", "/t/traced/flaky", key=None)
    assert reply.status == 401
    assert reply.json()["trace_id"] == reply.headers["X-Trace-Id"]
