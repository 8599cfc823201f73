"""compose/ checked statically: the Compose specification's JSON schema, and every file,
port and environment variable it names against the repository and servoscope.toml.
tests/deploy/test_compose_stack.py runs it for real with podman-compose."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from servoscope.settings import REPO_ROOT, Settings, env_name, load
from stack.components import prometheus_config

COMPOSE_DIR = REPO_ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
SCHEMA = Path(__file__).parent / "data" / "compose_spec.json"  # see data/README.md
PROMETHEUS_FILE = COMPOSE_DIR / "prometheus.yml"
SCRAPE_DIR = Path("/scrape-targets")
RULES_DIR = Path("/etc/prometheus/rules")
GRAFANA_PORT = 3000  # Grafana runs only under compose, so servoscope.toml has no key for it
PROMETHEUS_HEADER = (
    "# Rendered from observability/prometheus/prometheus.yml for compose/ (all containers\n"
    "# share one network namespace); tests/unit/test_compose.py keeps the two in step.\n"
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load({})  # the file itself, whatever this shell's overrides


def service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    return compose["services"][name]


def argv(spec: dict[str, Any]) -> list[str]:
    command = spec.get("command", [])
    words = shlex.split(command) if isinstance(command, str) else list(command)
    if words[:2] == ["sh", "-c"]:
        words = shlex.split(words[2])
    return words


def flag(words: list[str], name: str) -> str:
    for i, word in enumerate(words):
        if word == name:
            return words[i + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    raise AssertionError(f"{name} not in {words}")


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def compose_prometheus_config() -> str:
    return PROMETHEUS_HEADER + prometheus_config(load({}), SCRAPE_DIR, RULES_DIR)


def test_the_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    errors = sorted(validator.iter_errors(compose), key=str)
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    # The schema does catch mistakes: a misspelt key is an error.
    typo = {"services": {"gateway": {"imagee": "servoscope:local"}}}
    assert list(validator.iter_errors(typo))


def test_every_file_it_refers_to_exists(compose: dict[str, Any]) -> None:
    for name, spec in compose["services"].items():
        if "build" in spec:
            context = (COMPOSE_DIR / spec["build"]["context"]).resolve()
            assert (context / spec["build"]["dockerfile"]).is_file(), name
        for volume in spec.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (COMPOSE_DIR / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in compose["volumes"], f"{name} mounts undeclared {source}"
    containerfile = (REPO_ROOT / "deploy" / "images" / "Containerfile").read_text()
    ignore = (REPO_ROOT / "deploy" / "images" / "Containerfile.dockerignore").read_text().split()
    kept = [entry[1:] for entry in ignore if entry.startswith("!")]
    for line in containerfile.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert (REPO_ROOT / source).exists(), f"the Containerfile copies missing {source}"
                assert any(source.startswith(k) for k in kept), f"{source} is not in the context"


def test_ports_and_options_agree_with_servoscope_toml(
    compose: dict[str, Any], settings: Settings
) -> None:
    ports = {name: int(port) for name, port in settings.sections["ports"].items()}
    published = service(compose, "stack-network")["ports"]
    for mapping in published:
        host_ip, host_port, container_port = mapping.split(":")
        assert host_ip == "127.0.0.1", f"{mapping}: publish on loopback only"
        assert host_port == container_port
        assert int(container_port) in {*ports.values(), GRAFANA_PORT}, mapping
    published_ports = {int(m.split(":")[2]) for m in published}
    assert {ports["gateway"], ports["prometheus"], ports["jaeger_ui"], GRAFANA_PORT} <= (
        published_ports
    )

    for name, port_key, section in (
        ("gateway", "gateway", "gateway"),
        ("servo-controller", "servo", "servo"),
        ("motion-planner", "motion", "motion"),
        ("telemetry-logger", "telemetry", "telemetry_logger"),
        ("device-state", "state", "device_state"),
    ):
        env = service(compose, name)["environment"]
        assert port_of(env["SERVOSCOPE_BIND"]) == ports[port_key], name
        assert int(env["SERVOSCOPE_WORKERS"]) == settings.get(section, "workers")
        assert int(env["SERVOSCOPE_THREADS"]) == settings.get(section, "threads")
    for name in ("servo-controller", "motion-planner", "telemetry-logger", "device-state"):
        bind = service(compose, name)["environment"]["SERVOSCOPE_BIND"]
        assert bind.startswith("127.0.0.1:"), f"{name} is reached through the gateway only"

    jaeger = service(compose, "jaeger")["environment"]
    for key in ("jaeger_otlp_grpc", "jaeger_otlp_http", "jaeger_query_grpc", "jaeger_health"):
        assert int(jaeger[f"JAEGER_{key.removeprefix('jaeger_').upper()}_PORT"]) == ports[key]
    assert int(jaeger["JAEGER_QUERY_HTTP_PORT"]) == ports["jaeger_ui"]

    words = argv(service(compose, "prometheus"))
    assert port_of(flag(words, "--web.listen-address")) == ports["prometheus"]
    assert "--enable-feature=exemplar-storage" in words
    assert int(flag(argv(service(compose, "toxiproxy")), "-port")) == ports["toxiproxy"]
    assert int(flag(argv(service(compose, "redis")), "--port")) == ports["redis"]

    simulator = argv(service(compose, "simulator"))
    assert int(flag(simulator, "--control-port")) == ports["simulator_control"]
    for option in ("channels", "speed", "acceleration", "baud"):
        assert int(flag(simulator, f"--{option}")) == settings.get("simulator", option)
    rfc2217 = f"{flag(simulator, '--rfc2217-host')}:{flag(simulator, '--rfc2217-port')}"
    assert rfc2217 == f"127.0.0.1:{ports['simulator_rfc2217']}"
    assert service(compose, "servo-controller")["environment"]["SERVO_PORT"] == (
        f"rfc2217://{rfc2217}"
    )

    datasources = yaml.safe_load(
        (REPO_ROOT / "observability/grafana/provisioning/datasources/datasources.yaml").read_text()
    )["datasources"]
    urls = {source["uid"]: source["url"] for source in datasources}
    assert urls["prometheus"] == f"http://127.0.0.1:{ports['prometheus']}"
    assert urls["jaeger"] == f"http://127.0.0.1:{ports['jaeger_ui']}"
    grafana = service(compose, "grafana")["environment"]
    assert int(grafana["GF_SERVER_HTTP_PORT"]) == GRAFANA_PORT


def test_environment_variables_are_ones_the_code_reads(
    compose: dict[str, Any], settings: Settings
) -> None:
    sources = "\n".join(p.read_text() for p in (REPO_ROOT / "servoscope").glob("*.py"))
    sources += (REPO_ROOT / "services" / "servo" / "config.py").read_text()
    overrides = {env_name(s, key) for s, keys in settings.sections.items() for key in keys}
    for name, spec in compose["services"].items():
        for variable in spec.get("environment", {}):
            if variable.startswith("SERVOSCOPE_"):
                known = variable in overrides or f'"{variable}"' in sources
                assert known, f"{name}: nothing reads {variable}"
            elif variable == "SERVO_PORT":
                assert '"SERVO_PORT"' in sources
    jaeger_config = (REPO_ROOT / "observability" / "jaeger" / "config.yaml").read_text()
    wanted = set(re.findall(r"\$\{env:(\w+)\}", jaeger_config))
    assert set(service(compose, "jaeger")["environment"]) == wanted


def test_prometheus_runs_the_local_stacks_config_and_rules(compose: dict[str, Any]) -> None:
    assert PROMETHEUS_FILE.read_text() == compose_prometheus_config(), (
        "compose/prometheus.yml is out of step with observability/prometheus/prometheus.yml; "
        "regenerate it: .venv/bin/python -c 'from tests.unit.test_compose import "
        "write_prometheus_config; write_prometheus_config()'"
    )
    prometheus = service(compose, "prometheus")
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    assert f"../observability/prometheus/rules:{RULES_DIR}:ro" in prometheus["volumes"]
    assert f"scrape-targets:{SCRAPE_DIR}:ro" in prometheus["volumes"]
    gunicorn_services = [
        n
        for n, spec in compose["services"].items()
        if "SERVOSCOPE_BIND" in spec.get("environment", {})
    ]
    assert set(gunicorn_services) == {
        "gateway",
        "servo-controller",
        "motion-planner",
        "telemetry-logger",
        "device-state",
    }
    for name in gunicorn_services:
        spec = service(compose, name)
        assert spec["environment"]["SERVOSCOPE_SCRAPE_DIR"] == str(SCRAPE_DIR)
        assert f"scrape-targets:{SCRAPE_DIR}" in spec["volumes"]


def test_grafana_gets_the_same_provisioning_and_dashboards(compose: dict[str, Any]) -> None:
    volumes = service(compose, "grafana")["volumes"]
    assert "../observability/grafana/provisioning:/etc/grafana/provisioning:ro" in volumes
    provider = yaml.safe_load(
        (REPO_ROOT / "observability/grafana/provisioning/dashboards/dashboards.yaml").read_text()
    )["providers"][0]
    assert f"../observability/grafana/dashboards:{provider['options']['path']}:ro" in volumes


def write_prometheus_config() -> None:
    PROMETHEUS_FILE.write_text(compose_prometheus_config())
