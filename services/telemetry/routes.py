"""HTTP routes of the telemetry logger."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from services.telemetry.config import TelemetryConfig
from services.telemetry.metrics import BATCHES_REJECTED, SAMPLES_STORED
from services.telemetry.samples import MAX_CHANNEL, parse_batch
from services.telemetry.store import IdempotencyConflict, SampleStore
from servoscope.jsonbody import invalid, json_value, query_integer
from servoscope.problems import Problem

blueprint = Blueprint("telemetry", __name__)
MAX_PAGE = 1000


def store() -> SampleStore:
    return current_app.extensions["telemetry.store"]


def config() -> TelemetryConfig:
    return current_app.extensions["telemetry.config"]


@blueprint.post("/samples")
def post_samples() -> tuple[Response, int, dict[str, str]]:
    try:
        samples = parse_batch(json_value(), config().max_batch)
    except Problem:
        BATCHES_REJECTED.inc()
        raise
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 255:
        raise invalid("Idempotency-Key", "the Idempotency-Key header must be 1 to 255 characters")
    try:
        receipt = store().append(samples, body=request.get_data(), idempotency_key=key)
    except IdempotencyConflict:
        raise Problem(
            422,
            "Idempotency Key Reused",
            "this Idempotency-Key was already used for a different batch; use a new key",
            slug="idempotency-key-reused",
        ) from None
    if not receipt.replayed:
        SAMPLES_STORED.inc(receipt.accepted)
    headers = {"Idempotent-Replayed": "true"} if receipt.replayed else {}
    return jsonify(receipt.as_dict()), 202, headers


def _query_time(name: str) -> float | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        raise invalid(name, f"{name!r} must be a Unix time in seconds; got {raw!r}") from None


@blueprint.get("/samples")
def get_samples() -> Response:
    channel = (
        query_integer("channel", minimum=0, maximum=MAX_CHANNEL)
        if "channel" in request.args
        else None
    )
    limit = query_integer("limit", minimum=1, maximum=MAX_PAGE, default=100)
    cursor = query_integer("cursor", minimum=0, maximum=2**62, default=0)
    samples = store().query(
        channel=channel,
        since=_query_time("since"),
        until=_query_time("until"),
        after_id=cursor,
        limit=limit,
    )
    next_cursor = str(samples[-1]["id"]) if len(samples) == limit else None
    return jsonify(samples=samples, next_cursor=next_cursor)


@blueprint.get("/stats")
def get_stats() -> Response:
    cfg = config()
    return jsonify(
        **store().stats(),
        retention={"max_age_s": cfg.max_age_s, "max_rows": cfg.max_rows},
    )
