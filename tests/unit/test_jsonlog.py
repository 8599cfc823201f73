"""The access line: written straight to the stream or through logging, the same JSON object."""

from __future__ import annotations

import io
import json
import logging

import pytest

from servoscope import jsonlog

FIELDS = {"request_id": "r1", "method": "GET", "route": "/x", "path": "/x", "status": 200}


@pytest.fixture
def stream():
    """The JSON handler alone on the root logger (as in a service), writing to a buffer."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, jsonlog._installed
    jsonlog.setup_logging("svc")
    ours = root.handlers[0]
    out = io.StringIO()
    ours.setStream(out)

    def alone() -> io.StringIO:
        root.handlers[:] = [ours]  # pytest adds its capturing handlers for each test phase
        return out

    yield alone
    root.handlers[:], _, jsonlog._installed = saved
    root.setLevel(saved[1])


def test_the_direct_line_is_the_line_logging_writes(stream) -> None:
    out = stream()
    jsonlog.log_access("GET /x 200", FIELDS, "a" * 32, "b" * 16)
    jsonlog._installed = None  # no fast path: through logging's record and formatter
    jsonlog.log_access("GET /x 200", FIELDS, "", "")
    direct, logged = (json.loads(line) for line in out.getvalue().splitlines())
    assert direct.pop("ts")[:10] == logged.pop("ts")[:10]
    assert (direct.pop("trace_id"), direct.pop("span_id")) == ("a" * 32, "b" * 16)
    assert (
        direct
        == logged
        == {
            "level": "info",
            "service": "svc",
            "logger": "servoscope.access",
            "msg": "GET /x 200",
            **FIELDS,
        }
    )


def test_another_handler_still_gets_the_line(stream) -> None:
    out = stream()
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    jsonlog.access_log.addHandler(handler)
    try:
        jsonlog.log_access("GET /x 200", FIELDS, "", "")
    finally:
        jsonlog.access_log.removeHandler(handler)
    assert [r.getMessage() for r in seen] == ["GET /x 200"]
    assert json.loads(out.getvalue())["request_id"] == "r1"


def test_nothing_is_written_below_the_loggers_level(stream) -> None:
    out = stream()
    jsonlog.access_log.setLevel(logging.WARNING)
    try:
        jsonlog.log_access("GET /x 200", FIELDS, "", "")
    finally:
        jsonlog.access_log.setLevel(logging.NOTSET)
    assert out.getvalue() == ""
