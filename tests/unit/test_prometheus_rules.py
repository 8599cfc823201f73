"""The stack's Prometheus configuration, rules and SLO alerts, checked by promtool itself."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from observability.prometheus import slo_rules
from servoscope.settings import REPO_ROOT, load
from stack.components import render_prometheus_config

PROMETHEUS_DIR = REPO_ROOT / "observability" / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.rules.yml"))
ALERT_TESTS = PROMETHEUS_DIR / "tests" / "slo.test.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is missing: run `make tools` (Debian's prometheus package has it)")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)


def test_the_rendered_stack_config_passes_promtool(tmp_path: Path) -> None:
    config = render_prometheus_config(load(), tmp_path)
    result = promtool("check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    # The rules are part of it: `make up` loads them.
    for rule_file in RULE_FILES:
        assert str(rule_file) in result.stdout


def test_rule_files_pass_promtool() -> None:
    assert RULE_FILES
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_burn_rate_alerts_fire_and_stay_quiet_on_synthetic_series() -> None:
    result = promtool("test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_both_firing_and_quiet() -> None:
    alerts = {
        (rule["alert"], rule["labels"]["severity"])
        for group in slo_rules.rule_groups()["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    cases = [
        case
        for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    fired = {
        (case["alertname"], alert["exp_labels"]["severity"])
        for case in cases
        for alert in case["exp_alerts"]
    }
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert fired == alerts
    assert quiet == {name for name, _ in alerts}


def test_the_committed_slo_rules_are_what_the_slo_definitions_generate() -> None:
    assert slo_rules.RULES_FILE.read_text() == slo_rules.render(), (
        "run `.venv/bin/python -m observability.prometheus.slo_rules` and commit the result"
    )
