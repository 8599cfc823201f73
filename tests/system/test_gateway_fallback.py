"""Through the whole stack: while the servo controller hangs, the gateway's breaker opens
and ``GET /api/servo/current-angle`` answers the last known angle, marked stale; a
command gets the breaker's 503; the admin API shows and resets the breaker."""

from __future__ import annotations

import os
import signal

from stack.ephemeral import Stack, wait_for

ANGLE = "/api/servo/current-angle?channel=0"


def test_the_last_known_angle_is_served_stale_while_the_servo_hangs(stack: Stack) -> None:
    fresh = stack.api("GET", ANGLE)
    # The servo controller marks its own answers ("stale": false while its poll is fresh).
    assert fresh.status == 200 and not fresh.json().get("stale")
    instance = f"{stack.settings.host}:{stack.settings.port('servo')}"
    servo_group = stack.pids()["servo-controller"]  # gunicorn master and workers: one group
    os.killpg(servo_group, signal.SIGSTOP)
    try:
        # Each request times out its attempts (deadline 3 s); after 5 failed attempts the
        # breaker opens and the fallback answers at once.
        stale = wait_for(
            lambda: (r := stack.api("GET", ANGLE)).status == 200 and r.json().get("stale") and r,
            timeout=30,
            interval=0.1,
            message="a stale angle",
        )
        body = stale.json()
        assert body["stale"] is True
        assert body["channel"] == 0 and body["angle"] == fresh.json()["angle"]
        assert body["age_s"] > 0 and stale.headers["Warning"].startswith("110")
        assert int(stale.headers["Age"]) >= 0
        breakers = stack.api("GET", "/admin/breakers").json()["breakers"]
        servo = next(b for b in breakers if b["upstream"] == "servo")
        assert (servo["instance"], servo["state"]) == (instance, "open")
        # A command has no fallback: the breaker's 503 with Retry-After, at once.
        refused = stack.api("POST", "/api/servo/set-position", body='{"channel": 0, "angle": 10}')
        assert refused.status == 503 and int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["type"].endswith("breaker-open")
    finally:
        os.killpg(servo_group, signal.SIGCONT)
    assert stack.api("POST", f"/admin/breakers/servo/{instance}/close").json()["state"] == (
        "closed"
    )

    def fresh_again() -> bool:
        reply = stack.api("GET", ANGLE)
        return reply.status == 200 and not reply.json().get("stale")

    wait_for(fresh_again, timeout=15, message="fresh angles again")
