"""Start-up and reload: a bad route table stops the gateway with a message naming the
entry; SIGHUP reloads the table without dropping a request in flight."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.ephemeral import HttpReply, terminate, wait_for
from tests.component.gatewayrig import (
    Upstream,
    gateway_env,
    spawn_gateway,
    start_gateway,
    start_upstream,
)

pytestmark = pytest.mark.component

ROUTES = """
upstreams:
  echo: {{instances: ["{url}"]}}
routes:
  echo:
    prefix: /t/echo
    upstream: echo
    operations: [{{method: GET, path: /echo, scope: read}}]
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    started = start_upstream("l")
    yield started
    terminate(started.process)


def test_a_bad_route_table_stops_start_up_naming_the_entry(tmp_path: Path, upstream) -> None:
    broken = ROUTES.format(url=upstream.url) + "    policy: {{retry: {{max_attempts: many}}}}\n"
    env, _port, _ = gateway_env(tmp_path, broken.replace("{{", "{").replace("}}", "}"))
    log_file = tmp_path / "gateway.log"
    process = spawn_gateway(env, log_file)
    try:
        assert process.wait(timeout=30) != 0
    finally:
        terminate(process)
    log = log_file.read_text()
    assert "routes.echo.policy.retry.max_attempts: must be a whole number >= 0; got 'many'" in log
    assert str(tmp_path / "routes.yaml") in log


def test_sighup_reloads_routes_without_dropping_in_flight_requests(
    tmp_path: Path, upstream: Upstream
) -> None:
    gateway = start_gateway(tmp_path, ROUTES.format(url=upstream.url))
    try:
        assert gateway.api("GET", "/t/other/echo").status == 404
        in_flight: list[HttpReply] = []
        slow = threading.Thread(
            target=lambda: in_flight.append(gateway.api("GET", "/t/echo/echo?delay_ms=1500"))
        )
        slow.start()
        time.sleep(0.3)
        gateway.routes_file.write_text(
            gateway.routes_file.read_text().replace("prefix: /t/echo", "prefix: /t/other")
        )
        os.kill(gateway.process.pid, signal.SIGHUP)

        def reloaded() -> bool:
            try:
                return gateway.api("GET", "/t/other/echo").status == 200
            except ConnectionError:
                # A connection accepted by an old gthread worker in the instant it stops
                # can be reset (benoitc/gunicorn#3038, #3380): a new request, not one in flight.
                return False

        wait_for(reloaded, timeout=15, message="the reloaded route")
        slow.join()
        assert in_flight[0].status == 200  # the old worker finished it
        assert gateway.api("GET", "/t/echo/echo").status == 404
    finally:
        terminate(gateway.process)
