"""device-state's sections on the resilience core, with scripted neighbours: each its
own breaker, a dead one marks only its section unavailable with the last good data."""

from __future__ import annotations

import pytest

from services.state import dependencies
from services.state.app import section_pipeline
from services.state.config import StateConfig
from services.state.sections import Section, SectionGatherer
from servoscope.outbound import UpstreamError, UpstreamTimeout
from servoscope.resilience.clock import ManualClock
from tests.unit.scripted import ScriptedClient, reply

CONFIG = StateConfig(
    servo_url="http://127.0.0.1:9",
    motion_url="http://127.0.0.1:10",
    telemetry_url="http://127.0.0.1:11",
    breaker_failures=2,
)


@pytest.fixture
def rig():  # type: ignore[no-untyped-def]
    clock = ManualClock()
    servo, motion = ScriptedClient(), ScriptedClient()
    get_servo = dependencies.get_json(
        section_pipeline("servo", CONFIG.servo_url, CONFIG, servo, clock), "servo"
    )
    get_motion = dependencies.get_json(
        section_pipeline("motion", CONFIG.motion_url, CONFIG, motion, clock), "motion"
    )
    gatherer = SectionGatherer(
        [
            Section("servo", lambda: dependencies.servo_status(get_servo)),
            Section("motion", lambda: dependencies.active_moves(get_motion)),
        ],
        CONFIG.timeout_s,
    )
    return gatherer, servo, motion, clock


def test_a_dead_neighbour_marks_only_its_section_with_the_last_good_data(rig) -> None:
    gatherer, servo, motion, _ = rig
    servo.script += [reply(200, b'{"state": "active"}'), UpstreamError("could not connect")]
    motion.script += [reply(200, b'{"moves": []}')] * 2
    assert gatherer.gather()["servo"] == {"status": "ok", "data": {"state": "active"}}
    state = gatherer.gather()
    assert state["motion"] == {"status": "ok", "data": []}
    broken = state["servo"]
    assert broken["status"] == "unavailable"
    assert broken["reason"] == "UpstreamError: could not connect"
    assert broken["last_good"] == {"state": "active"} and broken["age_s"] >= 0
    # Each attempt carried what is left of the section's deadline.
    assert servo.attempts[0]["timeout"].total == pytest.approx(CONFIG.timeout_s)


def test_each_section_has_its_own_breaker_which_opens_and_refuses_at_once(rig) -> None:
    gatherer, servo, motion, clock = rig
    servo.script += [UpstreamTimeout("no answer"), reply(503)]
    motion.script += [reply(200, b'{"moves": []}')] * 3
    reasons = [gatherer.gather()["servo"]["reason"] for _ in range(3)]
    assert reasons[0] == f"no answer within {CONFIG.timeout_s}s"
    assert reasons[1] == "AnsweredWith: servo answered 503"
    assert reasons[2].startswith("circuit breaker open: ")
    assert len(servo.attempts) == 2  # the third was refused before the wire
    assert len(motion.attempts) == 3  # its own breaker never saw the servo's failures
    clock.advance(CONFIG.breaker_reset_s)
    servo.script.append(reply(200, b'{"state": "active"}'))
    assert gatherer.gather()["servo"]["status"] == "ok"


def test_a_4xx_marks_the_section_but_does_not_count_against_the_neighbour(rig) -> None:
    gatherer, servo, motion, _ = rig
    servo.script += [reply(404)] * 3
    motion.script += [reply(200, b'{"moves": []}')] * 3
    for _ in range(3):
        assert gatherer.gather()["servo"]["reason"] == "AnsweredWith: servo answered 404"
    assert len(servo.attempts) == 3  # the breaker stayed closed
