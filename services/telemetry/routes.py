"""HTTP routes of the telemetry logger."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from services.telemetry.config import TelemetryConfig
from services.telemetry.contract import CHANNEL, CURSOR, LIMIT, SINCE, UNTIL
from services.telemetry.metrics import BATCHES_REJECTED, SAMPLES_STORED
from services.telemetry.samples import parse_batch
from services.telemetry.store import IdempotencyConflict, SampleStore
from servoscope.jsonbody import invalid, json_value
from servoscope.problems import Problem

blueprint = Blueprint("telemetry", __name__)


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


@blueprint.get("/samples")
def get_samples() -> Response:
    limit = LIMIT.read()
    samples = store().query(
        channel=CHANNEL.read(),
        since=SINCE.read(),
        until=UNTIL.read(),
        after_id=CURSOR.read(),
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
