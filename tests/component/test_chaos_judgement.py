"""The chaos runner judges runs from their journals: journals written by the real
`chaos` command for runs that passed, deviated, failed an action, started from an
unmet baseline, or skipped their rollbacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.journal import judge_file
from servoscope.settings import REPO_ROOT

ACTIVITIES = "tests.component.chaos_activities"


def activity(kind: str, name: str, func: str, **arguments) -> dict:
    return {
        "type": kind,
        "name": name,
        "provider": {"type": "python", "module": ACTIVITIES, "func": func, "arguments": arguments},
    }


def experiment(flag: Path, method: list[dict]) -> dict:
    probe = activity("probe", "flag is up", "flag", path=str(flag))
    probe["tolerance"] = True
    return {
        "version": "1.0.0",
        "title": "judgement fixture",
        "description": "a tiny experiment for the judge",
        "steady-state-hypothesis": {"title": "the flag is up", "probes": [probe]},
        "method": method,
        "rollbacks": [activity("action", "roll back", "nothing")],
    }


def run_chaos(tmp_path: Path, spec: dict, strategy: str = "always") -> Path:
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps(spec))
    journal = tmp_path / "journal.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "chaostoolkit",
            "--no-version-check",
            "run",
            "--rollback-strategy",
            strategy,
            "--journal-path",
            str(journal),
            str(path),
        ],
        cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=60,
    )
    return journal


@pytest.fixture
def flag(tmp_path: Path) -> Path:
    path = tmp_path / "flag"
    path.touch()
    return path


def test_a_clean_run_passes(tmp_path, flag) -> None:
    verdict = judge_file(
        run_chaos(tmp_path, experiment(flag, [activity("action", "a", "nothing")]))
    )
    assert verdict.passed, verdict.reasons


def test_a_deviation_fails(tmp_path, flag) -> None:
    spec = experiment(flag, [activity("action", "break it", "remove", path=str(flag))])
    verdict = judge_file(run_chaos(tmp_path, spec))
    assert not verdict.passed
    assert any(reason.startswith("deviated") for reason in verdict.reasons), verdict.reasons


def test_a_failed_action_fails_although_chaos_exits_0(tmp_path, flag) -> None:
    spec = experiment(flag, [activity("action", "inject", "explode")])
    journal = run_chaos(tmp_path, spec)
    assert json.loads(journal.read_text())["status"] == "completed"  # the tool calls it fine
    verdict = judge_file(journal)
    assert verdict.reasons == [
        "method activity failed: inject: RuntimeError: the fault could not be injected"
    ]


def test_an_unmet_baseline_fails(tmp_path, flag) -> None:
    flag.unlink()
    verdict = judge_file(
        run_chaos(tmp_path, experiment(flag, [activity("action", "a", "nothing")]))
    )
    assert not verdict.passed
    assert any(reason.startswith("unmet baseline") for reason in verdict.reasons), verdict.reasons


def test_skipped_rollbacks_fail(tmp_path, flag) -> None:
    spec = experiment(flag, [activity("action", "a", "nothing")])
    verdict = judge_file(run_chaos(tmp_path, spec, strategy="never"))
    assert verdict.reasons == ["rollbacks skipped: 0 of 1 played"]
