"""Metrics stay exact, with exemplars, when a service runs several gunicorn workers."""

from __future__ import annotations

import json
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from stack.ephemeral import Stack, ephemeral_stack, wait_for

ROUTE = "/api/servo/set-position"
COMMANDS = 40


def prometheus_total(stack: Stack, promql: str) -> float:
    return sum(float(r["value"][1]) for r in stack.prometheus_query(promql))


def test_two_gateway_workers_are_each_scraped_once_and_keep_exemplars(tmp_path: Path) -> None:
    with ephemeral_stack(tmp_path / "run", SERVOSCOPE_GATEWAY_WORKERS="2") as stack:

        def both_workers_up():
            up = stack.prometheus_query('up{job="gateway"}')
            return up if len(up) == 2 and all(r["value"][1] == "1" for r in up) else None

        targets = wait_for(both_workers_up, timeout=30, interval=0.5, message="2 gateway targets")
        assert {r["metric"]["worker"] for r in targets} == {"0", "1"}
        # The service port itself is not scraped too: that would count a worker twice.
        service_port = f":{stack.settings.port('gateway')}"
        assert not any(r["metric"]["instance"].endswith(service_port) for r in targets)

        def command(i: int):
            body = json.dumps({"channel": 1, "angle": 30 + i})
            return stack.api("POST", ROUTE, body=body)

        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(command, range(COMMANDS)))
        assert [r.status for r in replies] == [200] * COMMANDS
        trace_ids = {r.headers["X-Trace-Id"] for r in replies}

        counted = (
            f'http_server_request_duration_seconds_count{{job="gateway",http_route="{ROUTE}"}}'
        )

        def all_counted():
            total = prometheus_total(stack, counted)
            assert total <= COMMANDS, f"double-counted: {total} > {COMMANDS}"
            return total == COMMANDS

        wait_for(all_counted, timeout=20, interval=0.5, message=f"{COMMANDS} commands counted")
        per_worker = stack.prometheus_query(f"sum by (worker) ({counted})")
        assert len(per_worker) == 2 and all(float(r["value"][1]) > 0 for r in per_worker), (
            "the load did not reach both workers",
            per_worker,
        )
        # The servo controller is another target, scraped on its own schedule: wait for it.
        upstream = (
            'http_server_request_duration_seconds_count{job="servo-controller",'
            'http_route="/set-position"}'
        )
        wait_for(
            lambda: prometheus_total(stack, upstream) == COMMANDS,
            timeout=20,
            interval=0.5,
            message=f"{COMMANDS} commands counted by the servo controller",
        )

        selector = (
            f'http_server_request_duration_seconds_bucket{{job="gateway",http_route="{ROUTE}"}}'
        )

        def exemplars_from_both_workers():
            found = stack.prometheus_exemplars(selector)
            workers = {series["seriesLabels"]["worker"] for series in found}
            return found if workers == {"0", "1"} else None

        found = wait_for(exemplars_from_both_workers, timeout=20, interval=0.5, message="exemplars")
        seen = {e["labels"]["trace_id"] for series in found for e in series["exemplars"]}
        assert seen and seen <= trace_ids, "exemplars must point at the traces callers were given"

        # One worker fewer (gunicorn's TTOU): its target goes, so no stale series remain.
        os.kill(stack.pids()["gateway"], signal.SIGTTOU)
        targets_dir = stack.run_dir / "scrape-targets"
        wait_for(
            lambda: len(list(targets_dir.glob("gateway-*.json"))) == 1,
            timeout=15,
            message="the retired worker's target removed",
        )
        wait_for(
            lambda: len(stack.prometheus_query('up{job="gateway"}')) == 1,
            timeout=30,
            interval=0.5,
            message="Prometheus scraping one gateway worker",
        )
