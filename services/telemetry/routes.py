"""HTTP routes of the telemetry logger."""

from __future__ import annotations

import math
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from services.telemetry.config import TelemetryConfig
from services.telemetry.ingest import EVENT_KINDS
from services.telemetry.metrics import BATCHES_REJECTED, SAMPLES_STORED
from services.telemetry.samples import MAX_CHANNEL, parse_batch
from services.telemetry.store import IdempotencyConflict, TelemetryStore
from servoscope.jsonbody import invalid, json_value, query_integer
from servoscope.problems import Problem

blueprint = Blueprint("telemetry", __name__)
MAX_PAGE = 1000


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


def _query_time(name: str) -> float | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise invalid(name, f"{name!r} must be a Unix time in seconds; got {raw!r}")
    return value


def _channel() -> int | None:
    if "channel" not in request.args:
        return None
    return query_integer("channel", minimum=0, maximum=MAX_CHANNEL)


def _page_query() -> dict[str, Any]:
    """The filters and the page both listings take: channel, since, until, limit, cursor."""
    return {
        "channel": _channel(),
        "since": _query_time("since"),
        "until": _query_time("until"),
        "limit": query_integer("limit", minimum=1, maximum=MAX_PAGE, default=100),
        "after_id": query_integer("cursor", minimum=0, maximum=2**62, default=0),
    }


def _page(name: str, rows: list[dict[str, Any]], limit: int) -> Response:
    """A page of ``rows`` and the cursor of the next one (``null`` on the last)."""
    next_cursor = str(rows[-1]["id"]) if len(rows) == limit else None
    return jsonify(**{name: rows}, next_cursor=next_cursor)


@blueprint.get("/samples")
def get_samples() -> Response:
    query = _page_query()
    return _page("samples", store().query(**query), query["limit"])


EVENT_PARAMETERS = {"kind", "subject", "channel", "since", "until", "limit", "cursor"}
ALL_KINDS = sorted(set().union(*EVENT_KINDS.values()))


@blueprint.get("/events")
def get_events() -> Response:
    """Device and move events from the streams, in the order they were stored."""
    unknown = sorted(set(request.args) - EVENT_PARAMETERS)
    if unknown:
        raise invalid(
            unknown[0],
            f"unknown query parameter {unknown[0]!r}; use {sorted(EVENT_PARAMETERS)}",
        )
    kind = request.args.get("kind")
    if kind is not None and kind not in ALL_KINDS:
        raise invalid("kind", f"'kind' must be one of {ALL_KINDS}; got {kind!r}")
    subject = request.args.get("subject")
    if subject is not None and not 0 < len(subject) <= 200:
        raise invalid("subject", "'subject' must be 1 to 200 characters")
    query = _page_query()
    events = store().query_events(kind=kind, subject=subject, **query)
    return _page("events", events, query["limit"])


@blueprint.get("/stats")
def get_stats() -> Response:
    cfg = config()
    return jsonify(
        **store().stats(),
        retention={"max_age_s": cfg.max_age_s, "max_rows": cfg.max_rows},
    )
