"""The Kubernetes chaos experiment's way to the API server, checked without the cluster.

What it needs: the kubeconfig that ``release.host_access`` writes for a loopback port, with the
cluster's own certificates (``pki.create``), read by chaostoolkit-kubernetes's client; and the
requests that chaosk8s's ``terminate_pods`` and our hold and heal (``chaos.kubernetes``) send
through it. A TLS server on loopback stands in for the API server: it holds the API server's
certificate and, like kube-apiserver (``--client-ca-file``), wants a client certificate of the
cluster's CA. tests/kubernetes/test_servo_chaos.py runs the experiment against the real API
server, through the port-forward of ``release.api_access``.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from chaosk8s import create_k8s_api_client
from chaosk8s.pod.actions import terminate_pods
from kubernetes.client import CoreV1Api
from kubernetes.config import kube_config

from chaos import kubernetes as actions
from deploy.cluster import pki, release

NODE = "servoscope-node"
LABEL = "servoscope.dev/servo-bus=true"
NAMESPACE = "servoscope"
SELECTOR = "app.kubernetes.io/component=servo-controller"


def pod(name: str, ready: bool) -> dict[str, Any]:
    condition = {"type": "Ready", "status": "True" if ready else "False"}
    return {"metadata": {"name": name}, "status": {"conditions": [condition]}}


class StandIn(ThreadingHTTPServer):
    """A node with the servo-bus label and the servo controller's pod, as the calls see them:
    the pod is gone once deleted, and a new one (unready at its first listing, ready at the
    next) appears once the label is back. Every request is kept with its client's subject."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[dict[str, Any]] = []
        self.labels: dict[str, str] = {"servoscope.dev/servo-bus": "true"}
        self.pods = [pod("servo-old", ready=True)]


class Handler(BaseHTTPRequestHandler):
    server: StandIn

    def _answer(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> tuple[str, dict[str, list[str]], Any]:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        url = urlsplit(self.path)
        subject = dict(pair[0] for pair in self.connection.getpeercert()["subject"])
        self.server.seen.append(
            {"method": self.command, "path": url.path, "body": body, "client": subject}
        )
        return url.path, parse_qs(url.query), body

    def do_PATCH(self) -> None:
        _, _, body = self._record()
        for key, value in body["metadata"]["labels"].items():
            if value is None:  # a null removes the label
                self.server.labels.pop(key, None)
            else:
                self.server.labels[key] = value
                self.server.pods = [pod("servo-new", ready=False)]  # the DaemonSet's new pod
        self._answer({"metadata": {"name": NODE, "labels": self.server.labels}})

    def do_GET(self) -> None:
        _, query, _ = self._record()
        assert query["labelSelector"] == [SELECTOR]
        listed = self.server.pods
        self._answer({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": listed})
        self.server.pods = [pod(p["metadata"]["name"], ready=True) for p in listed]

    def do_DELETE(self) -> None:
        path, _, _ = self._record()
        name = path.rsplit("/", 1)[1]
        self.server.pods = [p for p in self.server.pods if p["metadata"]["name"] != name]
        self._answer(pod(name, ready=False))

    def log_message(self, *args: Any) -> None:
        pass


def use(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # The kubernetes client reads KUBECONFIG once, when imported (`chaos run` starts with it set).
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", env["KUBECONFIG"])


@pytest.fixture
def certificates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(pki, "PKI", tmp_path / "pki")
    monkeypatch.setattr(pki, "KUBECONFIG", tmp_path / "admin.kubeconfig")
    pki.create()
    return tmp_path / "pki"


@pytest.fixture
def api_server(certificates: Path) -> Iterator[StandIn]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates / "apiserver.crt", certificates / "apiserver.key")
    context.load_verify_locations(certificates / "ca.crt")
    context.verify_mode = ssl.CERT_REQUIRED
    server = StandIn()
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_experiments_actions_reach_the_api_server_with_the_clusters_credentials(
    api_server: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy in the environment (a closed loopback port) must not be used for loopback.
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    use(release.host_access(tmp_path, api_server.server_address[1]), monkeypatch)

    assert actions.hold_off(NODE, LABEL) == NODE
    assert terminate_pods(label_selector=SELECTOR, ns=NAMESPACE, all=True, grace_period=0) == [
        "servo-old"
    ]
    assert 0 < actions.bring_back(NAMESPACE, SELECTOR, NODE, LABEL, timeout_s=5) < 5

    seen = api_server.seen
    assert [(s["method"], s["path"]) for s in seen[:4]] == [
        ("PATCH", f"/api/v1/nodes/{NODE}"),
        ("GET", f"/api/v1/namespaces/{NAMESPACE}/pods"),
        ("DELETE", f"/api/v1/namespaces/{NAMESPACE}/pods/servo-old"),
        ("PATCH", f"/api/v1/nodes/{NODE}"),
    ]
    assert seen[0]["body"] == {"metadata": {"labels": {"servoscope.dev/servo-bus": None}}}
    assert seen[2]["body"]["gracePeriodSeconds"] == 0  # deleted at once: SIGKILL
    assert seen[3]["body"] == {"metadata": {"labels": {"servoscope.dev/servo-bus": "true"}}}
    assert {s["client"]["commonName"] for s in seen} == {"servoscope-admin"}


def test_the_client_refuses_a_name_the_api_servers_certificate_does_not_hold(
    api_server: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = tmp_path / "localhost.kubeconfig"
    pki.write_kubeconfig(kubeconfig, f"https://localhost:{api_server.server_address[1]}")
    use({"KUBECONFIG": str(kubeconfig)}, monkeypatch)
    core = CoreV1Api(create_k8s_api_client())
    core.api_client.configuration.retries = 0
    with pytest.raises(Exception, match="certificate"):
        core.read_node(NODE)
    assert api_server.seen == []
