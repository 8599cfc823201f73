"""The Kubernetes tools of ``make k8s-check``, and a real API server on loopback.

The tools are built from their Go modules by ``tools/kubernetes.sh`` (stage ``client``:
helm, kubeconform and its offline schemas, etcd, kube-apiserver, kubectl); ``tool_env``
reads where they are from ``tools/kubernetes.sh env``. :func:`api_server` starts etcd and
kube-apiserver on free loopback ports, enough for ``helm install --dry-run=server`` to be
judged by real admission (schema, defaulting, Pod Security), and stops both by PID.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from servoscope.settings import REPO_ROOT
from stack.ephemeral import free_ports, terminate

CHART = REPO_ROOT / "deploy" / "helm" / "servoscope"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
GOLDEN_DIR = REPO_ROOT / "tests" / "deploy" / "golden"
RELEASE = "servoscope"
NAMESPACE = "servoscope"
READY_TIMEOUT_S = 90


def tool_env() -> dict[str, str]:
    """``KUBE_BIN``, ``KUBECONFORM_SCHEMA_LOCATION``, ``KUBERNETES_VERSION``, ..."""
    script = REPO_ROOT / "tools" / "kubernetes.sh"
    out = subprocess.run([script, "env"], capture_output=True, text=True, check=True).stdout
    pairs = (line.split("=", 1) for line in out.splitlines() if "=" in line)
    return {name: "".join(shlex.split(value)) for name, value in pairs}  # shell-quoted values


def tool(env: dict[str, str], name: str) -> str:
    path = Path(env["KUBE_BIN"]) / name
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{path} is not built: make k8s-check builds it (tools/kubernetes.sh)")
    return str(path)


def helm_template(env: dict[str, str], values: Path) -> str:
    """The chart rendered with one ci values file, as the golden files hold it."""
    result = subprocess.run(
        [tool(env, "helm"), "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
         "-f", str(values)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"helm template -f {values.name}:\n{result.stderr}"
    return result.stdout


def golden_path(values: Path) -> Path:
    return GOLDEN_DIR / values.name.replace("-values.yaml", ".yaml")


@dataclass
class ApiServer:
    kubeconfig: Path
    url: str

    def kubectl(self, env: dict[str, str], *args: str, stdin: str | None = None):
        return subprocess.run(
            [tool(env, "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin, capture_output=True, text=True, check=False,
        )  # fmt: skip


def _certificates(directory: Path) -> None:
    """A serving certificate for 127.0.0.1 and the service-account signing key."""
    run = lambda *argv: subprocess.run(argv, check=True, capture_output=True)  # noqa: E731
    key, cert = str(directory / "apiserver.key"), str(directory / "apiserver.crt")
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        "-keyout", key, "-out", cert)  # fmt: skip
    run("openssl", "genrsa", "-out", str(directory / "sa.key"), "2048")
    run("openssl", "rsa", "-in", str(directory / "sa.key"), "-pubout",
        "-out", str(directory / "sa.pub"))  # fmt: skip


@contextlib.contextmanager
def api_server(env: dict[str, str], work: Path) -> Iterator[ApiServer]:
    """etcd + kube-apiserver on free loopback ports; both stopped by PID on exit."""
    work.mkdir(parents=True, exist_ok=True)
    _certificates(work)
    client_port, peer_port, api_port = free_ports(3)
    token = "servoscope-k8s-check"
    (work / "tokens.csv").write_text(f"{token},admin,admin,system:masters\n")
    etcd_url = f"http://127.0.0.1:{client_port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    logs = [(work / "etcd.log").open("w"), (work / "kube-apiserver.log").open("w")]
    processes: list[subprocess.Popen] = []
    try:
        processes.append(subprocess.Popen(
            [tool(env, "etcd"), "--name", "k8s-check", "--data-dir", str(work / "etcd"),
             "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
             "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
             "--initial-cluster", f"k8s-check={peer_url}", "--unsafe-no-fsync",
             "--log-level", "warn"],
            stdout=logs[0], stderr=subprocess.STDOUT,
        ))  # fmt: skip
        processes.append(subprocess.Popen(
            [tool(env, "kube-apiserver"), "--etcd-servers", etcd_url,
             "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
             "--secure-port", str(api_port),
             "--tls-cert-file", str(work / "apiserver.crt"),
             "--tls-private-key-file", str(work / "apiserver.key"),
             "--token-auth-file", str(work / "tokens.csv"),
             "--authorization-mode", "RBAC",
             "--service-account-issuer", "https://kubernetes.default.svc",
             "--service-account-key-file", str(work / "sa.pub"),
             "--service-account-signing-key-file", str(work / "sa.key"),
             "--service-cluster-ip-range", "10.96.0.0/16",
             "--endpoint-reconciler-type", "none",
             # No controller manager makes the namespaces' default service accounts.
             "--disable-admission-plugins", "ServiceAccount",
             # The hostPath device mode needs it; Pod Security still refuses it below
             # "privileged", which is what the check shows.
             "--allow-privileged=true"],
            stdout=logs[1], stderr=subprocess.STDOUT,
        ))  # fmt: skip
        url = f"https://127.0.0.1:{api_port}"
        kubeconfig = work / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters: [{{name: check, cluster: {{server: '{url}', "
            f"certificate-authority: '{work / 'apiserver.crt'}'}}}}]\n"
            f"users: [{{name: admin, user: {{token: {token}}}}}]\n"
            "contexts: [{name: check, context: {cluster: check, user: admin}}]\n"
            "current-context: check\n"
        )
        server = ApiServer(kubeconfig, url)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while server.kubectl(env, "get", "--raw", "/readyz").returncode != 0:
            for process in processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{process.args[0]} exited; see {work}/*.log")
            if time.monotonic() > deadline:
                raise TimeoutError(f"kube-apiserver not ready in {READY_TIMEOUT_S}s; see {work}")
            time.sleep(0.5)
        yield server
    finally:
        for process in reversed(processes):
            terminate(process)
        for log in logs:
            log.close()
