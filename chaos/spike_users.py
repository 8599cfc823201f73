"""The locust users of the traffic-spike experiment: one client, its own API key,
asking for the whole device state (the most expensive read: device-state fans out to
the servo controller, the motion planner and the telemetry logger) far more often than
the stack can answer.

:func:`chaos.faults.prepare_spike` starts locust and waits for the ready file: every user
spawned and waiting. :func:`chaos.faults.start_spike` releases the burst with SIGUSR1; it
lasts ``SERVOSCOPE_SPIKE_SECONDS``, then locust quits and prints its summary. Locust's own
start-up (seconds of imports on a busy machine) therefore never falls inside the seconds
the probes measure, and its ``-t`` limit is only a safety net: gevent measures that timer
from a loop time cached before a slow start-up, so it can fire at once.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import gevent
from gevent.event import Event
from locust import FastHttpUser, constant_throughput, events, task

API_KEY = os.environ["SERVOSCOPE_API_KEY"]
READY_FILE = Path(os.environ["SERVOSCOPE_SPIKE_READY"])
SECONDS = float(os.environ["SERVOSCOPE_SPIKE_SECONDS"])

_released = Event()


@events.init.add_listener
def _arm(environment: Any, **_: Any) -> None:
    def release() -> None:
        if not _released.is_set():
            _released.set()
            # Spawned after the loop has run for a while, so its clock is current.
            gevent.spawn_later(SECONDS, environment.runner.quit)

    gevent.signal_handler(signal.SIGUSR1, release)


@events.spawning_complete.add_listener
def _ready(user_count: int, **_: Any) -> None:
    READY_FILE.touch()


class Spiker(FastHttpUser):
    wait_time = constant_throughput(1)  # one request per user per second

    def on_start(self) -> None:
        _released.wait()

    @task
    def device_state(self) -> None:
        with self.client.get(
            "/api/state",
            headers={"Authorization": f"Bearer {API_KEY}", "User-Agent": "servoscope-chaos-spike"},
            catch_response=True,
        ) as response:
            if response.status_code in (200, 429):
                response.success()  # refusing the excess is what the gateway should do
