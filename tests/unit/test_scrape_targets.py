"""Worker slots and the file_sd targets Prometheus reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from servoscope.scrape_targets import (
    SCRAPE_DIR_ENV,
    forget_service,
    forget_worker,
    free_slot,
    write_target,
)
from servoscope.settings import load
from stack.components import components, scrape_dir


def test_a_replacement_worker_inherits_the_lowest_free_slot() -> None:
    assert free_slot([]) == 0
    assert free_slot([0, 2]) == 1  # worker 1 died: its replacement keeps its series
    assert free_slot([None, 0, 1]) == 2


def test_targets_are_file_sd_groups_and_restarts_forget_only_their_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_target(tmp_path, "gateway", 0, "127.0.0.1:40001", "127.0.0.1:8080/worker-0")
    write_target(tmp_path, "gateway", 1, "127.0.0.1:40002", "127.0.0.1:8080/worker-1")
    write_target(tmp_path, "servo-controller", 0, "127.0.0.1:8101")
    group = json.loads((tmp_path / "gateway-1.json").read_text())
    assert group == [
        {
            "targets": ["127.0.0.1:40002"],
            "labels": {
                "job": "gateway",
                "service": "gateway",
                "worker": "1",
                "instance": "127.0.0.1:8080/worker-1",
            },
        }
    ]
    assert (
        "instance"
        not in json.loads((tmp_path / "servo-controller-0.json").read_text())[0]["labels"]
    )
    monkeypatch.setenv(SCRAPE_DIR_ENV, str(tmp_path))
    forget_worker("gateway", 1)  # one worker fewer
    assert (tmp_path / "gateway-0.json").exists() and not (tmp_path / "gateway-1.json").exists()
    forget_service("gateway")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["servo-controller-0.json"]


def test_every_gunicorn_service_of_the_stack_publishes_its_targets(tmp_path: Path) -> None:
    # A service started without the directory would never be scraped by Prometheus.
    services = [c for c in components(load({}), tmp_path) if "gunicorn" in c.argv]
    assert {c.name for c in services} >= {"gateway", "servo-controller"}
    for component in services:
        assert component.env.get(SCRAPE_DIR_ENV) == str(scrape_dir(tmp_path)), component.name
