"""The locust users of the traffic-spike experiment: one client, its own API key,
asking for the whole device state (the most expensive read: device-state fans out to
the servo controller, the motion planner and the telemetry logger) far more often than
the stack can answer. Started by :func:`chaos.faults.start_spike` with ``-u``/``-t``."""

from __future__ import annotations

import os

from locust import FastHttpUser, constant_throughput, task

API_KEY = os.environ["SERVOSCOPE_API_KEY"]


class Spiker(FastHttpUser):
    wait_time = constant_throughput(1)  # one request per user per second

    @task
    def device_state(self) -> None:
        with self.client.get(
            "/api/state",
            headers={"Authorization": f"Bearer {API_KEY}", "User-Agent": "servoscope-chaos-spike"},
            catch_response=True,
        ) as response:
            if response.status_code in (200, 429):
                response.success()  # refusing the excess is what the gateway should do
