"""HTTP routes of the telemetry logger."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from services.telemetry.config import TelemetryConfig
from services.telemetry.contract import (
    CHANNEL,
    CURSOR,
    EVENT_KIND,
    EVENT_PARAMETERS,
    EVENT_SUBJECT,
    LIMIT,
    SINCE,
    UNTIL,
)
from services.telemetry.metrics import BATCHES_REJECTED, SAMPLES_STORED
from services.telemetry.samples import parse_batch
from services.telemetry.store import IdempotencyConflict, TelemetryStore
from servoscope.jsonbody import invalid, json_value
from servoscope.problems import Problem

blueprint = Blueprint("telemetry", __name__)


def store() -> TelemetryStore:
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


def _page_query() -> dict[str, Any]:
    """The filters and the page both listings take: channel, since, until, limit, cursor."""
    return {
        "channel": CHANNEL.read(),
        "since": SINCE.read(),
        "until": UNTIL.read(),
        "limit": LIMIT.read(),
        "after_id": CURSOR.read(),
    }


def _page(name: str, rows: list[dict[str, Any]], limit: int) -> Response:
    """A page of ``rows`` and the cursor of the next one (``null`` on the last)."""
    next_cursor = str(rows[-1]["id"]) if len(rows) == limit else None
    return jsonify(**{name: rows}, next_cursor=next_cursor)


@blueprint.get("/samples")
def get_samples() -> Response:
    query = _page_query()
    return _page("samples", store().query(**query), query["limit"])


@blueprint.get("/events")
def get_events() -> Response:
    """Device and move events from the streams, in the order they were stored."""
    unknown = sorted(set(request.args) - EVENT_PARAMETERS)
    if unknown:
        raise invalid(
            unknown[0],
            f"unknown query parameter {unknown[0]!r}; use {sorted(EVENT_PARAMETERS)}",
        )
    query = _page_query()
    events = store().query_events(kind=EVENT_KIND.read(), subject=EVENT_SUBJECT.read(), **query)
    return _page("events", events, query["limit"])


@blueprint.get("/stats")
def get_stats() -> Response:
    cfg = config()
    return jsonify(
        **store().stats(),
        retention={"max_age_s": cfg.max_age_s, "max_rows": cfg.max_rows},
    )
