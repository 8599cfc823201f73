"""``make k8s-check``: the Helm chart linted, rendered, validated and admitted, offline.

For every ``deploy/helm/servoscope/ci/*-values.yaml``: ``helm lint --strict``; ``helm
template`` compared with its golden file in ``tests/deploy/golden/`` (after a deliberate
chart change, regenerate them with ``make k8s-golden`` and review the diff);
``kubeconform -strict`` against JSON schemas generated offline from the pinned
Kubernetes version; and ``helm install --dry-run=server`` against a real kube-apiserver
(with etcd) on loopback, in a namespace that enforces Pod Security "restricted". Workload
templates only draw Pod Security *warnings*, so every pod template is also created as a
Pod (server-side dry run), where the namespace's level is enforced. The hostPath device
mode is refused at "baseline" and admitted only at "privileged", as the chart documents.
"""

from __future__ import annotations

import difflib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from servoscope.settings import REPO_ROOT
from tests.deploy.kube import (
    CHART,
    CI_VALUES,
    RELEASE,
    ApiServer,
    api_server,
    golden_path,
    helm_template,
    tool,
    tool_env,
)

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(300)]

UPDATE_GOLDEN = os.environ.get("SERVOSCOPE_UPDATE_GOLDEN") == "1"
PRIVILEGED_VARIANTS = {"host-path-values.yaml"}
ids = [path.name for path in CI_VALUES]


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return tool_env()


def test_every_variant_has_a_values_file() -> None:
    assert {path.name for path in CI_VALUES} >= {
        "simulator-values.yaml",
        "device-plugin-values.yaml",
        "host-path-values.yaml",
        "external-values.yaml",
    }


@pytest.mark.parametrize("values", CI_VALUES, ids=ids)
def test_lint_strict(env: dict[str, str], values: Path) -> None:
    result = subprocess.run(
        [tool(env, "helm"), "lint", "--strict", str(CHART), "-f", str(values)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", CI_VALUES, ids=ids)
def test_rendering_matches_the_golden_file(env: dict[str, str], values: Path) -> None:
    rendered = helm_template(env, values)
    golden = golden_path(values)
    if UPDATE_GOLDEN:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(rendered)
    assert golden.exists(), f"no golden file {golden}: run make k8s-golden"
    expected = golden.read_text()
    if rendered != expected:
        diff = "".join(
            list(difflib.unified_diff(
                expected.splitlines(keepends=True), rendered.splitlines(keepends=True),
                str(golden), "helm template",
            ))[:80]
        )  # fmt: skip
        pytest.fail(
            f"the chart renders differently from {golden.name}; if the change is meant, "
            f"run make k8s-golden and review the diff:\n{diff}"
        )


@pytest.mark.parametrize("values", CI_VALUES, ids=ids)
def test_kubeconform_strict(env: dict[str, str], values: Path) -> None:
    result = subprocess.run(
        [tool(env, "kubeconform"), "-strict", "-summary", "-output", "text",
         "-kubernetes-version", env["KUBERNETES_VERSION"].removeprefix("v"),
         "-schema-location", env["KUBECONFORM_SCHEMA_LOCATION"], "-"],
        input=helm_template(env, values), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Invalid: 0, Errors: 0, Skipped: 0" in result.stdout, result.stdout


def test_the_readmes_helm_template_line(env: dict[str, str], tmp_path: Path) -> None:
    """What the README gives kubectl users renders, from the repo root, as written."""
    readme = (REPO_ROOT / "README.md").read_text()
    lines = [line for line in readme.splitlines() if line.startswith("helm template ")]
    assert lines
    for line in lines:
        done = subprocess.run(
            ["bash", "-c", line], cwd=REPO_ROOT, capture_output=True, text=True, check=False,
            env={**os.environ, "PATH": f"{env['KUBE_BIN']}:{os.environ['PATH']}"},
        )  # fmt: skip
        assert done.returncode == 0, (line, done.stderr)
        written = REPO_ROOT / "servoscope.yaml"
        try:
            assert "kind: DaemonSet" in written.read_text()
        finally:
            written.unlink(missing_ok=True)


def test_no_key_no_gateway(env: dict[str, str]) -> None:
    """The default values hold no key: rendering stops and says what to set."""
    result = subprocess.run(
        [tool(env, "helm"), "template", RELEASE, str(CHART)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "apiKeys.keys" in result.stderr and "apiKeys.publicDevKey" in result.stderr


def test_several_telemetry_loggers_only_on_postgres(env: dict[str, str]) -> None:
    """SQLite has one writer: a second logger replica is refused unless the store is the
    shared PostgreSQL, whose loggers take the DSN from a Secret and need no volume."""
    simulator = CHART / "ci" / "simulator-values.yaml"
    result = subprocess.run(
        [tool(env, "helm"), "template", RELEASE, str(CHART), "-f", str(simulator),
         "--set", "telemetryLogger.replicas=2"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode != 0 and "telemetryLogger.store: postgres" in result.stderr
    external = documents(helm_template(env, CHART / "ci" / "external-values.yaml"))
    [logger] = [d for d in external if d["kind"] == "StatefulSet"]
    assert logger["spec"]["replicas"] == 2 and "volumeClaimTemplates" not in logger["spec"]
    env_vars = {e["name"]: e for e in logger["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env_vars["SERVOSCOPE_TELEMETRY_LOGGER_STORE"]["value"] == "postgres"
    dsn = env_vars["SERVOSCOPE_TELEMETRY_LOGGER_POSTGRES_DSN"]["valueFrom"]["secretKeyRef"]
    assert dsn == {"name": "servoscope-telemetry-postgres", "key": "dsn"}


def test_the_public_dev_key_only_on_request(env: dict[str, str]) -> None:
    for values in CI_VALUES:
        secrets = [d for d in documents(helm_template(env, values)) if d["kind"] == "Secret"]
        keys = "".join(s["stringData"]["keys.yaml"] for s in secrets)
        dev_on = yaml.safe_load(values.read_text())["apiKeys"].get("publicDevKey", False)
        dev_hash = "04feb13f10fb10a0b1daa54c3ab139fcbeebeb380f7755f722b17c38824ba2f7"
        assert (dev_hash in keys) == dev_on, values.name
        if dev_on:
            assert (
                "PUBLIC dev key" in secrets[0]["metadata"]["annotations"]["servoscope.dev/warning"]
            )


def documents(manifest: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


def pods_of(manifest: str, namespace: str) -> list[dict[str, Any]]:
    """Every workload's pod template as a Pod of its own, for enforced admission."""
    pods = []
    for doc in documents(manifest):
        if doc["kind"] not in ("Deployment", "DaemonSet", "StatefulSet"):
            continue
        template = doc["spec"]["template"]
        spec = dict(template["spec"])
        for claim in doc["spec"].get("volumeClaimTemplates", []):
            name = claim["metadata"]["name"]
            spec["volumes"] = [
                *spec.get("volumes", []),
                {"name": name, "persistentVolumeClaim": {"claimName": f"{name}-0"}},
            ]
        pods.append({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": doc["metadata"]["name"], "namespace": namespace,
                         "labels": template["metadata"].get("labels", {})},
            "spec": spec,
        })  # fmt: skip
    return pods


@pytest.fixture(scope="module")
def server(env: dict[str, str], tmp_path_factory) -> Iterator[ApiServer]:
    with api_server(env, tmp_path_factory.mktemp("apiserver")) as running:
        yield running


def namespace(env: dict[str, str], server: ApiServer, name: str, level: str) -> str:
    manifest = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {f"pod-security.kubernetes.io/{mode}": level for mode in ("enforce", "warn")},
        },
    }
    created = server.kubectl(env, "apply", "-f", "-", stdin=yaml.safe_dump(manifest))
    assert created.returncode == 0, created.stderr
    return name


def install_dry_run(env: dict[str, str], server: ApiServer, values: Path, ns: str):
    return subprocess.run(
        [tool(env, "helm"), "install", RELEASE, str(CHART), "--dry-run=server",
         "--kubeconfig", str(server.kubeconfig), "--namespace", ns, "-f", str(values)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def create_pods_dry_run(env: dict[str, str], server: ApiServer, values: Path, ns: str):
    pods = pods_of(helm_template(env, values), ns)
    assert pods
    stream = yaml.safe_dump_all(pods)
    return server.kubectl(env, "create", "--dry-run=server", "-f", "-", stdin=stream)


@pytest.mark.parametrize(
    "values", [v for v in CI_VALUES if v.name not in PRIVILEGED_VARIANTS], ids=lambda v: v.name
)
def test_installs_under_pod_security_restricted(
    env: dict[str, str], server: ApiServer, values: Path
) -> None:
    ns = namespace(
        env, server, "restricted-" + values.name.removesuffix("-values.yaml"), "restricted"
    )
    installed = install_dry_run(env, server, values, ns)
    assert installed.returncode == 0, installed.stderr
    assert "violate PodSecurity" not in installed.stderr, installed.stderr
    assert "kind: DaemonSet" in installed.stdout  # the server answered with every object
    pods = create_pods_dry_run(env, server, values, ns)
    assert pods.returncode == 0, pods.stderr


def test_the_host_path_variant_costs_pod_security(env: dict[str, str], server: ApiServer) -> None:
    values = CHART / "ci" / "host-path-values.yaml"
    baseline = namespace(env, server, "baseline-host-path", "baseline")
    refused = create_pods_dry_run(env, server, values, baseline)
    assert refused.returncode != 0
    assert 'violates PodSecurity "baseline:latest"' in refused.stderr, refused.stderr
    assert "privileged" in refused.stderr and "hostPath" in refused.stderr
    # Only the servo controller breaks it: every other pod passes even "restricted".
    assert refused.stderr.count("violates PodSecurity") == 1, refused.stderr

    privileged = namespace(env, server, "privileged-host-path", "privileged")
    installed = install_dry_run(env, server, values, privileged)
    assert installed.returncode == 0, installed.stderr
    assert create_pods_dry_run(env, server, values, privileged).returncode == 0
