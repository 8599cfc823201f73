"""HTTP routes of the servo controller.

Every body and query parameter is validated before anything is encoded, so bad
input is a 4xx problem naming the field and no byte reaches the serial port.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from flask import Blueprint, Response, current_app, jsonify, request

from services.servo.contract import channel_param
from services.servo.controller import ServoController
from services.servo.device import DeviceTimeout, DeviceUnavailable, GarbledReply, LineBusy
from services.servo.device_errors import DeviceReportedErrors
from services.servo.idempotency import HEADER, IdempotencyCache, StoredResponse, check_key
from services.servo.idempotency import fingerprint as request_fingerprint
from servoscope.jsonbody import integer, json_object, number, reject_unknown
from servoscope.problems import Problem, problem_response

blueprint = Blueprint("servo", __name__)


def controller() -> ServoController:
    return current_app.extensions["servo.controller"]


def idempotency_cache() -> IdempotencyCache:
    return current_app.extensions["servo.idempotency"]


@blueprint.errorhandler(DeviceUnavailable)
def _unavailable(exc: DeviceUnavailable) -> Response:
    return problem_response(
        Problem(
            503,
            "Device Unavailable",
            f"{exc}; the service reconnects by itself, retry shortly",
            slug="device-unavailable",
            headers={"Retry-After": "1"},
            state=controller().device.state.value,
        )
    )


@blueprint.errorhandler(LineBusy)
def _busy(exc: LineBusy) -> Response:
    return problem_response(
        Problem(503, "Line Busy", str(exc), slug="line-busy", headers={"Retry-After": "1"})
    )


@blueprint.errorhandler(DeviceTimeout)
def _timeout(exc: DeviceTimeout) -> Response:
    return problem_response(
        Problem(
            504,
            "Device Timeout",
            f"{exc}; the command may not have been applied",
            slug="device-timeout",
        )
    )


@blueprint.errorhandler(GarbledReply)
def _garbled(exc: GarbledReply) -> Response:
    return problem_response(
        Problem(
            502,
            "Garbled Device Reply",
            f"{exc}; check the baud rate and the cable; the command may not have been applied",
            slug="device-garbled-reply",
        )
    )


@blueprint.errorhandler(DeviceReportedErrors)
def _device_errors(exc: DeviceReportedErrors) -> Response:
    return problem_response(
        Problem(502, "Device Error", str(exc), slug="device-error", errors=exc.names)
    )


# Raised after the command was written to the serial line (see the handlers above).
WRITTEN_OUTCOME_UNKNOWN = (DeviceTimeout, GarbledReply, DeviceReportedErrors)


def idempotent(view: Callable[[], Response]) -> Callable[[], Response]:
    """Honour ``Idempotency-Key`` on a command (see :mod:`services.servo.idempotency`)."""

    @functools.wraps(view)
    def wrapper() -> Response:
        key = request.headers.get(HEADER)
        if key is None:
            return view()
        cache = idempotency_cache()
        key = check_key(key)
        fingerprint = request_fingerprint(request.method, request.path, request.get_data())
        stored = cache.begin(key, fingerprint)
        if stored is not None:
            replay = Response(stored.body, status=stored.status, content_type=stored.content_type)
            replay.headers["Idempotent-Replayed"] = "true"
            return replay
        try:
            response = view()
        except WRITTEN_OUTCOME_UNKNOWN as exc:
            # The command went out on the line: it may have been applied, so a retry
            # gets this answer again rather than a second write.
            response = current_app.make_response(current_app.handle_user_exception(exc))
        except BaseException:
            cache.abandon(key)
            raise
        if 200 <= response.status_code < 300 or response.status_code in (502, 504):
            cache.complete(
                key,
                StoredResponse(response.status_code, response.get_data(), response.content_type),
            )
        else:
            cache.abandon(key)
        return response

    return wrapper


def _optional_body() -> dict:
    """A command without parameters accepts no body, or an empty JSON object."""
    if not request.get_data(cache=True):
        return {}
    body = json_object()
    reject_unknown(body, set())
    return body


def _optional_limit(body: dict, field: str, allowed: tuple[int, int]) -> int | None:
    """An optional speed or acceleration, within the channel's configured limit."""
    if field not in body:
        return None
    low, high = allowed
    return integer(body, field, minimum=low, maximum=high)


@blueprint.post("/set-position")
@idempotent
def set_position() -> Response:
    ctl = controller()
    body = json_object()
    reject_unknown(body, {"channel", "angle", "speed", "acceleration"})
    channel = integer(body, "channel", minimum=0, maximum=ctl.config.channel_count - 1)
    settings = ctl.config.channel(channel)
    low, high = settings.angle_range
    angle = number(body, "angle", minimum=low, maximum=high)
    speed = _optional_limit(body, "speed", settings.speed_range)
    acceleration = _optional_limit(body, "acceleration", settings.acceleration_range)
    accepted = ctl.set_position(channel, angle, speed, acceleration)
    return jsonify(accepted.as_json())


@blueprint.post("/home")
@idempotent
def home() -> Response:
    _optional_body()
    return jsonify(targets=controller().home())


@blueprint.get("/current-angle")
def current_angle() -> Response:
    ctl = controller()
    channel = channel_param(ctl.config).read()
    reading = ctl.reading(channel)
    if reading is None:
        raise Problem(
            503,
            "No Reading Yet",
            f"no position has been read from the device yet (it is {ctl.device.state.value})",
            slug="no-reading-yet",
            headers={"Retry-After": "1"},
        )
    return jsonify(reading)


@blueprint.get("/status")
def status() -> Response:
    return jsonify(controller().status())
