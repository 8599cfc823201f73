"""The route table: the shipped one is valid and described; mistakes name their entry."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway import openapi
from gateway.routing import RouteConfigError, load_routes
from servoscope.settings import load

GOOD = """
upstreams:
  servo: {instances: [servo, "http://127.0.0.1:9999"], balance: least_outstanding}
routes:
  servo:
    prefix: /api/servo
    upstream: servo
    policy: {retry: {max_attempts: 2}, max_body_bytes: 100}
    operations:
      - {method: GET, path: /current-angle, scope: read, fallback: last_known}
"""


def table_from(tmp_path: Path, text: str):
    path = tmp_path / "routes.yaml"
    path.write_text(textwrap.dedent(text))
    return load_routes(path, load({}))


def test_the_shipped_route_table_loads_and_every_operation_is_in_openapi() -> None:
    settings = load({})
    table = load_routes(settings.path("gateway", "routes_file"), settings)
    document = openapi.document(table)
    operations = [
        (r.prefix + op.path, op.method.lower()) for r in table.routes for op in r.operations
    ]
    assert operations
    for path, method in operations:
        assert method in document["paths"][path], path


def test_policy_is_parsed_with_defaults_filled_in(tmp_path: Path) -> None:
    table = table_from(tmp_path, GOOD)
    route = table.routes[0]
    assert route.retry.max_attempts == 2
    assert route.retry.backoff_base_s == 0.05  # the dataclass default
    assert route.max_body_bytes == 100
    assert route.operations[0].fallback == "last_known"
    upstream = table.upstreams["servo"]
    assert [i.id for i in upstream.instances] == [
        f"127.0.0.1:{load({}).port('servo')}",
        "127.0.0.1:9999",
    ]
    assert upstream.balance == "least_outstanding"


@pytest.mark.parametrize(
    ("broken", "named"),
    [
        ("max_attempts: 0}", "routes.servo.policy.retry.max_attempts: must be greater than 0"),
        ("max_attempts: two}", "routes.servo.policy.retry.max_attempts: must be a whole number"),
        ("max_tries: 2}", "routes.servo.policy.retry.max_tries: unknown option"),
    ],
)
def test_a_bad_option_names_its_entry(tmp_path: Path, broken: str, named: str) -> None:
    text = GOOD.replace("max_attempts: 2}", broken)
    with pytest.raises(RouteConfigError) as error:
        table_from(tmp_path, text)
    assert named in str(error.value)
    assert str(tmp_path / "routes.yaml") in str(error.value)


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ("upstream: servo", "upstream: nowhere", "routes.servo.upstream: 'nowhere'"),
        ("balance: least_outstanding", "balance: random", "upstreams.servo.balance"),
        ('"http://127.0.0.1:9999"', "ftp://x", "upstreams.servo.instances[1]"),
        ("scope: read,", "scope: root,", "routes.servo.operations[0].scope"),
        ("fallback: last_known", "fallback: cached", "routes.servo.operations[0].fallback"),
        ("prefix: /api/servo", "prefix: api/servo/", "routes.servo.prefix"),
        ("max_body_bytes: 100", "max_body_bytes: -1", "routes.servo.policy.max_body_bytes"),
        ("upstream: servo\n", "upstream: servo\n    timeout_s: 2\n", "routes.servo.timeout_s"),
    ],
)
def test_a_bad_entry_is_named(tmp_path: Path, old: str, new: str, named: str) -> None:
    assert old in GOOD
    with pytest.raises(RouteConfigError) as error:
        table_from(tmp_path, GOOD.replace(old, new))
    assert named in str(error.value)


def test_a_route_served_twice_is_refused(tmp_path: Path) -> None:
    doubled = GOOD + textwrap.indent(
        textwrap.dedent(
            """
            again:
              prefix: /api/servo
              upstream: servo
              operations: [{method: GET, path: /current-angle, scope: read}]
            """
        ),
        "  ",
    )
    with pytest.raises(RouteConfigError, match=r"already routed by routes\.servo"):
        table_from(tmp_path, doubled)


def test_the_table_can_be_checked_before_a_reload(tmp_path: Path) -> None:
    bad = tmp_path / "routes.yaml"
    bad.write_text(GOOD.replace("scope: read,", "scope: root,"))
    result = subprocess.run(
        [sys.executable, "-m", "gateway.routing", str(bad)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "routes.servo.operations[0].scope" in result.stderr


def test_the_check_prints_each_routes_pipeline_with_what_a_control_run_switched_off(
    tmp_path: Path,
) -> None:
    control = tmp_path / "routes.yaml"
    control.write_text(
        GOOD.replace(
            "balance: least_outstanding}",
            "balance: least_outstanding, breaker: {enabled: false}, bulkhead: {enabled: false}}",
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "gateway.routing", str(control)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1] == (
        "  servo (/api/servo): authenticate → rate limit → request check → deadline → "
        "bulkhead (off) → retry (budget) → breaker (off) → attempt timeout → transport"
    )
