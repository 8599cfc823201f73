"""The users who load servoscope, as locust sees them.

- ``Operator`` (weight 3): watches servos: polls ``current-angle`` on every channel, the
  whole device through ``/api/state``, and the list of active moves. Waits 0.5-1.5 s
  between looks.
- ``Commander`` (weight 1): drives servos: ``set-position`` on channels 0-1 and short
  motion moves on a channel of its own (2-5), waiting for its move to end before the
  next. Waits 1-3 s between commands.
- ``TelemetryProducer`` (weight 1): posts batches of 50 samples every 1-2 s.

Every request starts its own trace (a fresh W3C ``traceparent``) so load traffic is
findable in Jaeger, and is marked synthetic (``baggage: synthetic=true`` and the
``servoscope-loadtest`` user agent). Every command carries an ``Idempotency-Key``.
The profile (``SERVOSCOPE_LOAD_PROFILE``) shapes the run; see profiles.yaml.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import secrets
import time
import uuid
from pathlib import Path

from locust import FastHttpUser, LoadTestShape, between, task

from loadtests.profiles import PROFILES_FILE, get_profile

API_KEY = os.environ.get("SERVOSCOPE_API_KEY", "servoscope-dev-key")
PROFILE = os.environ.get("SERVOSCOPE_LOAD_PROFILE", "smoke")
PROFILES = os.environ.get("SERVOSCOPE_LOAD_PROFILES", str(PROFILES_FILE))
READ_CHANNELS = range(6)
_commanders = itertools.count()


class ServoscopeUser(FastHttpUser):
    abstract = True

    def call(self, method: str, path: str, name: str, body: object = None, *, ok=(200, 202)):
        headers = {
            "Authorization": f"Bearer {API_KEY}",
            "traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01",
            "baggage": f"synthetic=true,load.profile={PROFILE}",
            "User-Agent": "servoscope-loadtest",
        }
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body)
        if method in ("POST", "DELETE"):
            headers["Idempotency-Key"] = uuid.uuid4().hex
        with self.client.request(
            method, path, name=name, data=data, headers=headers, catch_response=True
        ) as response:
            if response.status_code in ok:
                response.success()  # an expected 409 too: locust fails every 4xx by itself
            else:
                response.failure(f"{response.status_code}: {response.text[:200]}")
            return response


class Operator(ServoscopeUser):
    weight = 3
    wait_time = between(0.5, 1.5)

    @task(5)
    def current_angle(self) -> None:
        channel = random.choice(READ_CHANNELS)
        self.call("GET", f"/api/servo/current-angle?channel={channel}", "/api/servo/current-angle")

    @task(2)
    def device_state(self) -> None:
        self.call("GET", "/api/state", "/api/state")

    @task(1)
    def active_moves(self) -> None:
        self.call("GET", "/api/motion/moves", "/api/motion/moves")


class Commander(ServoscopeUser):
    weight = 1
    wait_time = between(1, 3)

    def on_start(self) -> None:
        self.move_channel = 2 + next(_commanders) % 4
        self.move_ends_at = 0.0

    @task(4)
    def set_position(self) -> None:
        body = {"channel": random.choice((0, 1)), "angle": round(random.uniform(20, 160), 1)}
        self.call("POST", "/api/servo/set-position", "/api/servo/set-position", body)

    @task(1)
    def move(self) -> None:
        if time.monotonic() < self.move_ends_at:
            return  # a commander waits for its own move to end
        body = {
            "channel": self.move_channel,
            "target_angle": round(random.uniform(30, 150), 1),
            "profile": random.choice(("trapezoidal", "minimum-jerk")),
            "duration_s": 0.6,
        }
        # 409: another commander shares this channel and its move is still running.
        self.call("POST", "/api/motion/moves", "/api/motion/moves", body, ok=(202, 409))
        self.move_ends_at = time.monotonic() + 0.8


class TelemetryProducer(ServoscopeUser):
    weight = 1
    wait_time = between(1, 2)

    @task
    def post_batch(self) -> None:
        now = time.time()
        batch = [
            {
                "channel": i % 6,
                "angle": round(random.uniform(0, 180), 2),
                "target_angle": 90.0,
                "ts": now - (50 - i) * 0.02,
            }
            for i in range(50)
        ]
        self.call("POST", "/api/telemetry/samples", "/api/telemetry/samples", batch)


class ProfileShape(LoadTestShape):
    """Runs the stages of the chosen profile, then stops the test."""

    profile = get_profile(PROFILE, Path(PROFILES))

    def tick(self) -> tuple[int, float] | None:
        stage = self.profile.stage_at(self.get_run_time())
        return None if stage is None else (stage.users, stage.spawn_rate)
