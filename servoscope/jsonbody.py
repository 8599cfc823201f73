"""Strict JSON request bodies: every rejection is a 4xx problem naming the field.

body = json_object()                       # 415 / 400 / 413 on bad input
reject_unknown(body, {"channel", "angle"})
channel = integer(body, "channel", minimum=0, maximum=23)
angle = number(body, "angle", minimum=0.0, maximum=180.0)
"""

from __future__ import annotations

import json
import math
from typing import Any

from flask import request

from servoscope.problems import Problem


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON; send a finite number")


def json_value() -> Any:
    """The request body as any JSON value, or a 415/400 problem that says what to send."""
    mimetype = request.mimetype
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise Problem(
            415,
            "Unsupported Media Type",
            f"send the body as application/json; got {mimetype or 'no Content-Type'}",
            slug="unsupported-media-type",
        )
    raw = request.get_data(cache=True)  # MAX_CONTENT_LENGTH turns oversize into 413 here
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(
            400, "Malformed JSON", f"the body is not valid JSON: {exc}", slug="malformed-json"
        ) from None


def json_object() -> dict[str, Any]:
    """The request body as a JSON object, or a 415/400 problem that says what to send."""
    body = json_value()
    if not isinstance(body, dict):
        raise Problem(
            400,
            "Malformed JSON",
            f"the body must be a JSON object; got {type(body).__name__}",
            slug="malformed-json",
        )
    return body


def invalid(field: str, detail: str) -> Problem:
    return Problem(422, "Invalid Field", detail, slug="invalid-field", field=field)


def reject_unknown(body: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise invalid(extra[0], f"unknown field {extra[0]!r}; allowed fields are {sorted(allowed)}")


def integer(
    body: dict[str, Any], field: str, *, minimum: int, maximum: int, default: int | None = None
) -> int:
    if field in body and body[field] is None:
        raise invalid(field, f"{field!r} must be an integer from {minimum} to {maximum}; got null")
    value = body.get(field, default)
    if value is None:
        raise invalid(field, f"{field!r} is required: an integer from {minimum} to {maximum}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON has one number type: 4.0 is the integer 4 (JSON Schema too)
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(field, f"{field!r} must be an integer; got {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise invalid(field, f"{field!r} must be from {minimum} to {maximum}; got {value}")
    return value


def number(
    body: dict[str, Any],
    field: str,
    *,
    minimum: float,
    maximum: float,
    default: float | None = None,
) -> float:
    if field in body and body[field] is None:
        raise invalid(field, f"{field!r} must be a number from {minimum} to {maximum}; got null")
    value = body.get(field, default)
    if value is None:
        raise invalid(field, f"{field!r} is required: a number from {minimum} to {maximum}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(field, f"{field!r} must be a number; got {type(value).__name__}")
    if not math.isfinite(value) or not minimum <= value <= maximum:
        raise invalid(field, f"{field!r} must be from {minimum} to {maximum}; got {value}")
    return float(value)
