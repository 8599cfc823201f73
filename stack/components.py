"""The processes of the local stack, in start order, each with its readiness check.

Everything here is derived from :mod:`servoscope.settings`, so a second stack on
other ports is only a matter of environment variables.
"""

from __future__ import annotations

import json
import os
import string
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from servoscope.scrape_targets import SCRAPE_DIR_ENV
from servoscope.settings import REPO_ROOT, Settings
from stack import postgres

TOOLS_BIN = Path(os.environ.get("SERVOSCOPE_CACHE", Path.home() / ".cache" / "servoscope")) / "bin"


@dataclass
class Component:
    """One supervised process: how to start it and how to know it is ready."""

    name: str
    argv: list[str]
    ready_url: str | None = None  # GET answers 2xx when ready
    ready_path: Path | None = None  # exists when ready (the simulator's pty link)
    ready_port: int | None = None  # accepts TCP connections when ready (redis)
    env: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[], None] | None = None  # runs before every (re)start
    ready_timeout_s: float = 30.0


JAEGER_ARGV = [
    str(TOOLS_BIN / "jaeger"),
    "--config",
    str(REPO_ROOT / "observability" / "jaeger" / "config.yaml"),
]
JAEGER_PORTS = ("query", "query_grpc", "health", "otlp_grpc", "otlp_http")


def jaeger_env(host: str, ports: dict[str, int]) -> dict[str, str]:
    """What observability/jaeger/config.yaml reads: its address and ``JAEGER_PORTS``."""
    return {
        "JAEGER_HOST": host,
        "JAEGER_QUERY_HTTP_PORT": str(ports["query"]),
        "JAEGER_QUERY_GRPC_PORT": str(ports["query_grpc"]),
        "JAEGER_HEALTH_PORT": str(ports["health"]),
        "JAEGER_OTLP_GRPC_PORT": str(ports["otlp_grpc"]),
        "JAEGER_OTLP_HTTP_PORT": str(ports["otlp_http"]),
    }


def gunicorn_argv(app: str) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "-c", "python:servoscope.gunicorn_conf", app]


def gunicorn_env(service: str, settings: Settings, port_name: str, section: str) -> dict[str, str]:
    """Bind address, workers and threads for servoscope.gunicorn_conf."""
    options = settings.sections.get(section, {})
    return {
        "SERVOSCOPE_SERVICE": service,
        "SERVOSCOPE_BIND": f"{settings.host}:{settings.port(port_name)}",
        "SERVOSCOPE_WORKERS": str(options.get("workers", 1)),
        "SERVOSCOPE_THREADS": str(options.get("threads", 8)),
    }


def scrape_dir(run_dir: Path) -> Path:
    """Where each gunicorn worker publishes its Prometheus target (file_sd)."""
    return run_dir / "scrape-targets"


def prometheus_config(settings: Settings, targets_dir: Path, rules_dir: Path) -> str:
    """observability/prometheus/prometheus.yml with its placeholders filled in."""
    template = (REPO_ROOT / "observability" / "prometheus" / "prometheus.yml").read_text()
    values = {
        "host": settings.host,
        "scrape_dir": str(targets_dir),
        "rules_dir": str(rules_dir),
        **{k: str(v) for k, v in settings.sections["ports"].items()},
    }
    return string.Template(template).substitute(values)


def render_prometheus_config(settings: Settings, run_dir: Path) -> Path:
    # Exists before Prometheus starts, so it watches the directory rather than polls it.
    scrape_dir(run_dir).mkdir(parents=True, exist_ok=True)
    target = run_dir / "prometheus.yml"
    rules = REPO_ROOT / "observability" / "prometheus" / "rules"
    target.write_text(prometheus_config(settings, scrape_dir(run_dir), rules))
    return target


def toxiproxy_config(settings: Settings) -> list[dict[str, object]]:
    """One proxy per ``[toxiproxy] proxies`` entry: ``name`` listens on ``<name>_proxy``."""
    host, port = settings.host, settings.port
    return [
        {
            "name": name,
            "listen": f"{host}:{port(f'{name}_proxy')}",
            "upstream": f"{host}:{port(name)}",
            "enabled": True,
        }
        for name in settings.sections["toxiproxy"]["proxies"]
    ]


def components(settings: Settings, run_dir: Path) -> list[Component]:
    host = settings.host
    port = settings.port
    tty_link = run_dir / "servo-tty"
    sim = settings.sections["simulator"]
    prometheus_config = run_dir / "prometheus.yml"
    # A real Maestro (SERVO_PORT=/dev/ttyACM0) replaces the simulator.
    real_device = os.environ.get("SERVO_PORT")

    def prepare_prometheus() -> None:
        render_prometheus_config(settings, run_dir)

    toxiproxy_file = run_dir / "toxiproxy.json"

    def prepare_toxiproxy() -> None:
        toxiproxy_file.write_text(json.dumps(toxiproxy_config(settings), indent=2))

    # A real network hop to break on purpose: off unless [toxiproxy] enabled (chaos stacks).
    toxiproxy = Component(
        name="toxiproxy",
        argv=[
            str(TOOLS_BIN / "toxiproxy-server"),
            "-host",
            host,
            "-port",
            str(port("toxiproxy")),
            "-config",
            str(toxiproxy_file),
        ],
        ready_url=f"http://{host}:{port('toxiproxy')}/version",
        prepare=prepare_toxiproxy,
    )

    simulator = Component(
        name="simulator",
        argv=[
            sys.executable,
            "-m",
            "services.servo.simulator",
            "--link",
            str(tty_link),
            "--control-port",
            str(port("simulator_control")),
            "--control-host",
            host,
            "--channels",
            str(sim["channels"]),
            "--speed",
            str(sim["speed"]),
            "--acceleration",
            str(sim["acceleration"]),
            "--baud",
            str(sim["baud"]),
        ],
        ready_path=tty_link,
    )
    listed = [
        Component(
            name="jaeger",
            argv=JAEGER_ARGV,
            env=jaeger_env(
                host,
                {
                    "query": port("jaeger_ui"),
                    "query_grpc": port("jaeger_query_grpc"),
                    "health": port("jaeger_health"),
                    "otlp_grpc": port("jaeger_otlp_grpc"),
                    "otlp_http": port("jaeger_otlp_http"),
                },
            ),
            ready_url=f"http://{host}:{port('jaeger_health')}/status",
        ),
        Component(
            name="prometheus",
            argv=[
                "prometheus",
                f"--config.file={prometheus_config}",
                f"--storage.tsdb.path={run_dir / 'prometheus-data'}",
                f"--web.listen-address={host}:{port('prometheus')}",
                "--web.enable-lifecycle",
                "--enable-feature=exemplar-storage",
                "--log.level=warn",
                "--log.format=json",
            ],
            ready_url=f"http://{host}:{port('prometheus')}/-/ready",
            prepare=prepare_prometheus,
        ),
        Component(
            name="redis",
            argv=[
                "redis-server",
                "--port",
                str(port("redis")),
                "--bind",
                host,
                "--save",
                "",
                # The streams must outlive a Redis crash: every write goes to the
                # append-only file before Redis answers (fsynced each second).
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--dir",
                str(run_dir / "redis"),
            ],
            ready_port=port("redis"),
            prepare=lambda: (run_dir / "redis").mkdir(exist_ok=True),
        ),
        *(
            [
                Component(
                    name="postgres",
                    argv=postgres.argv(settings, run_dir),
                    ready_port=port("postgres"),
                    prepare=lambda: postgres.prepare(run_dir) and None,
                    ready_timeout_s=60.0,
                )
            ]
            if postgres.wanted(settings)
            else []
        ),
        *([] if real_device else [simulator]),
        *([toxiproxy] if settings.sections["toxiproxy"]["enabled"] else []),
        Component(
            name="servo-controller",
            argv=gunicorn_argv("services.servo.app:create_app()"),
            env={
                **gunicorn_env("servo-controller", settings, "servo", "servo"),
                "SERVO_PORT": real_device or str(tty_link),
            },
            ready_url=f"http://{host}:{port('servo')}/readyz",
        ),
        *[
            Component(
                name=instance.replace("telemetry", "telemetry-logger", 1),
                argv=gunicorn_argv("services.telemetry.app:create_app()"),
                env={
                    **gunicorn_env(
                        instance.replace("telemetry", "telemetry-logger", 1),
                        settings,
                        instance,
                        "telemetry_logger",
                    ),
                    # Each stack keeps its samples in its own run directory; its instances
                    # share that one database file.
                    "SERVOSCOPE_TELEMETRY_LOGGER_DATABASE": os.environ.get(
                        "SERVOSCOPE_TELEMETRY_LOGGER_DATABASE", str(run_dir / "telemetry.sqlite3")
                    ),
                },
                ready_url=f"http://{host}:{port(instance)}/readyz",
            )
            for instance in settings.instance_ports("telemetry")
        ],
        Component(
            name="motion-planner",
            argv=gunicorn_argv("services.motion.app:create_app()"),
            env=gunicorn_env("motion-planner", settings, "motion", "motion"),
            ready_url=f"http://{host}:{port('motion')}/readyz",
        ),
        Component(
            name="device-state",
            argv=gunicorn_argv("services.state.app:create_app()"),
            env=gunicorn_env("device-state", settings, "state", "device_state"),
            ready_url=f"http://{host}:{port('state')}/readyz",
        ),
        Component(
            name="gateway",
            argv=gunicorn_argv("gateway.app:create_app()"),
            env=gunicorn_env("gateway", settings, "gateway", "gateway"),
            ready_url=f"http://{host}:{port('gateway')}/readyz",
        ),
    ]
    # Every gunicorn service publishes where Prometheus scrapes each of its workers.
    for component in listed:
        if "SERVOSCOPE_SERVICE" in component.env:
            component.env[SCRAPE_DIR_ENV] = str(scrape_dir(run_dir))
    return listed
