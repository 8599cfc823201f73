"""HTTP routes of the motion planner."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from services.motion.config import MotionConfig
from services.motion.contract import MAX_LIMIT, MOVE_ID, slowest_limits
from services.motion.moves import ChannelBusy, MoveManager
from services.motion.servo_link import ServoUnavailable
from services.motion.trajectory import PROFILES, PlanningError, plan
from servoscope.jsonbody import integer, invalid, json_object, number, reject_unknown
from servoscope.problems import Problem

blueprint = Blueprint("motion", __name__)
FIELDS = {"channel", "target_angle", "profile", "duration_s", "max_velocity", "max_acceleration"}
LIMITS = ("max_velocity", "max_acceleration")


def manager() -> MoveManager:
    return current_app.extensions["motion.manager"]


def config() -> MotionConfig:
    return current_app.extensions["motion.config"]


def _move_or_404(move_id: str):
    MOVE_ID.read(move_id)  # 400 for what cannot be a move id at all
    move = manager().get(move_id)
    if move is None:
        raise Problem(404, "Move Not Found", f"no move with id {move_id!r}", slug="move-not-found")
    return move


@blueprint.post("/moves")
def create_move() -> tuple[Response, int, dict[str, str]]:
    cfg = config()
    body = json_object()
    reject_unknown(body, FIELDS)
    channel = integer(body, "channel", minimum=0, maximum=cfg.channels - 1)
    target = number(body, "target_angle", minimum=cfg.min_angle, maximum=cfg.max_angle)
    profile = body.get("profile", "minimum-jerk")
    if profile not in PROFILES:
        raise invalid("profile", f"profile must be one of {list(PROFILES)}; got {profile!r}")
    limits = {}
    if "duration_s" in body:
        extra = [name for name in LIMITS if name in body]
        if extra:
            raise invalid(extra[0], f"give duration_s or {extra[0]}, not both")
        limits["duration_s"] = number(body, "duration_s", minimum=0.02, maximum=cfg.max_duration_s)
    else:
        # Without a duration the move is as fast as its limits allow; unnamed limits
        # take the configured defaults.
        defaults = {
            "max_velocity": cfg.default_max_velocity,
            "max_acceleration": cfg.default_max_acceleration,
        }
        slowest = dict(zip(LIMITS, slowest_limits(cfg), strict=True))
        for name, default in defaults.items():
            limits[name] = number(
                body, name, minimum=slowest[name], maximum=MAX_LIMIT, default=default
            )
    try:
        start = manager().servo.current_angle(channel)
    except ServoUnavailable as exc:
        raise Problem(
            503,
            "Servo Unavailable",
            f"cannot read where channel {channel} is, so no move was planned: {exc}",
            slug="servo-unavailable",
            headers={"Retry-After": "1"},
        ) from None
    try:
        trajectory = plan(profile, start=start, target=target, **limits)
    except PlanningError as exc:  # the fields were validated above; this is a bug guard
        raise invalid(next(iter(limits)), str(exc)) from None
    if trajectory.duration_s > cfg.max_duration_s:
        raise invalid(
            "max_velocity",
            f"these limits make a {trajectory.duration_s:.1f}s move; the longest allowed is "
            f"{cfg.max_duration_s}s: raise max_velocity or max_acceleration",
        )
    try:
        move = manager().start(channel, trajectory)
    except ChannelBusy as busy:
        raise Problem(
            409,
            "Channel Busy",
            f"channel {channel} is running move {busy.move_id}; cancel it with "
            f"DELETE /moves/{busy.move_id} or wait for it to finish",
            slug="channel-busy",
            active_move=busy.move_id,
        ) from None
    return jsonify(move.as_dict()), 202, {"Location": f"/moves/{move.id}"}


@blueprint.get("/moves")
def list_active_moves() -> Response:
    return jsonify(moves=[move.as_dict() for move in manager().active()])


@blueprint.get("/moves/<id>")
def get_move(id: str) -> Response:
    return jsonify(_move_or_404(id).as_dict())


@blueprint.delete("/moves/<id>")
def cancel_move(id: str) -> Response:
    move = _move_or_404(id)
    manager().cancel(id)
    return jsonify(move.as_dict())
