"""HTTP routes of the servo controller."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from services.servo.controller import ServoController
from services.servo.device import DeviceTimeout, DeviceUnavailable
from servoscope.jsonbody import integer, json_object, number, query_integer, reject_unknown
from servoscope.problems import Problem, problem_response

blueprint = Blueprint("servo", __name__)


def controller() -> ServoController:
    return current_app.extensions["servo.controller"]


@blueprint.errorhandler(DeviceUnavailable)
def _unavailable(exc: DeviceUnavailable) -> Response:
    return problem_response(
        Problem(
            503,
            "Device Unavailable",
            str(exc),
            slug="device-unavailable",
            headers={"Retry-After": "1"},
        )
    )


@blueprint.errorhandler(DeviceTimeout)
def _timeout(exc: DeviceTimeout) -> Response:
    return problem_response(Problem(504, "Device Timeout", str(exc), slug="device-timeout"))


@blueprint.post("/set-position")
def set_position() -> Response:
    ctl = controller()
    body = json_object()
    reject_unknown(body, {"channel", "angle"})
    channel = integer(body, "channel", minimum=0, maximum=ctl.config.channels - 1)
    calibration = ctl.config.calibration_for(channel)
    angle = number(body, "angle", minimum=calibration.min_angle, maximum=calibration.max_angle)
    accepted = ctl.set_position(channel, angle)
    return jsonify(channel=accepted.channel, angle=accepted.angle, pulse_us=accepted.pulse_us)


@blueprint.get("/current-angle")
def current_angle() -> Response:
    ctl = controller()
    channel = query_integer("channel", minimum=0, maximum=ctl.config.channels - 1)
    position = ctl.current_position(channel)
    return jsonify(
        channel=position.channel, angle=round(position.angle, 3), pulse_us=position.pulse_us
    )
