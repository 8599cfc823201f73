"""device-state answers 200 whatever its neighbours do: each dependency stopped in turn
marks only its own section unavailable, with the last good data and its age."""

from __future__ import annotations

import os
import signal

from stack.ephemeral import answers_ok, ephemeral_stack, wait_for

DEPENDENCIES = {
    "servo": ("servo-controller", "servo"),
    "motion": ("motion-planner", "motion"),
    "telemetry": ("telemetry-logger", "telemetry"),
}


def state(stack) -> dict:
    reply = stack.api("GET", "/api/state")
    assert reply.status == 200, reply.body
    return reply.json()


def test_state_degrades_per_section_and_never_fails_whole(tmp_path) -> None:
    with ephemeral_stack(tmp_path / "run") as stack:
        wait_for(
            lambda: all(state(stack)[s]["status"] == "ok" for s in DEPENDENCIES),
            10,
            message="every section ok",
        )
        healthy = state(stack)
        assert healthy["servo"]["data"]["state"] == "active"
        assert isinstance(healthy["motion"]["data"], list)
        wait_for(lambda: state(stack)["telemetry"]["data"]["samples"], 10, message="recent samples")

        hold = stack.run_dir / "hold"
        hold.mkdir(exist_ok=True)
        for section, (process, port) in DEPENDENCIES.items():
            (hold / process).touch()
            os.killpg(stack.pids()[process], signal.SIGKILL)
            answer = state(stack)
            broken = answer[section]
            assert broken["status"] == "unavailable", (section, broken)
            assert broken["reason"]
            assert "last_good" in broken and broken["age_s"] >= 0
            for other in set(DEPENDENCIES) - {section}:
                assert answer[other]["status"] == "ok", (section, other, answer[other])
            (hold / process).unlink()
            wait_for(
                lambda port=port: answers_ok(stack.url(port) + "/readyz"),
                20,
                message=f"{process} back",
            )
            wait_for(
                lambda section=section: state(stack)[section]["status"] == "ok",
                10,  # the breaker may be open: its reset lets a probe through
                message=f"{section} ok again",
            )


def test_a_hung_servo_costs_state_one_timeout_and_opens_its_breaker(tmp_path) -> None:
    with ephemeral_stack(tmp_path / "run") as stack:
        wait_for(lambda: state(stack)["servo"]["status"] == "ok", 10, message="servo ok")
        servo = stack.pids()["servo-controller"]
        os.killpg(servo, signal.SIGSTOP)
        try:
            reasons = [state(stack)["servo"]["reason"] for _ in range(5)]
            assert reasons[0].startswith("no answer within 0.5s"), reasons
            assert reasons[-1].startswith("circuit breaker open"), reasons
            assert state(stack)["motion"]["status"] == "ok"
        finally:
            os.killpg(servo, signal.SIGCONT)
