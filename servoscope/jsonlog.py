"""One JSON object per log line, carrying the trace and span of the current request.

Two ways in, one format: :class:`JsonFormatter` for every ``logging`` record, and
:func:`log_access` for the access line every request writes, which skips ``logging``'s
record and handler layers when nothing but this module's handler would see the line
(measured on the gateway's hot path, BENCHMARKS.md).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from opentelemetry import trace

ACCESS_LOGGER = "servoscope.access"
access_log = logging.getLogger(ACCESS_LOGGER)
_root = logging.getLogger()
# This module's handler and formatter once setup_logging ran; the access line's fast path.
_installed: tuple[logging.StreamHandler, JsonFormatter] | None = None


_second: tuple[int, str] = (-1, "")  # the last second formatted: most lines share it


def _timestamp(created: float) -> str:
    global _second
    whole, second = int(created), _second
    if second[0] != whole:
        second = _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{second[1]}.{int((created - whole) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """Formats a record as JSON; ``extra={...}`` fields become top-level keys."""

    _standard = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def entry(
        self, created: float, level: str, logger: str, msg: str, trace_id: str, span_id: str
    ) -> dict[str, Any]:
        """The fields every line starts with; the ids only within a valid span."""
        entry = {
            "ts": _timestamp(created),
            "level": level,
            "service": self.service,
            "logger": logger,
            "msg": msg,
        }
        if trace_id:
            entry["trace_id"] = trace_id
            entry["span_id"] = span_id
        return entry

    def format(self, record: logging.LogRecord) -> str:
        ctx = trace.get_current_span().get_span_context()
        trace_id, span_id = "", ""
        if ctx.is_valid:
            trace_id, span_id = format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
        entry = self.entry(
            record.created,
            record.levelname.lower(),
            record.name,
            record.getMessage(),
            trace_id,
            span_id,
        )
        for key, value in vars(record).items():
            if key not in self._standard and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def log_access(msg: str, fields: dict[str, Any], trace_id: str, span_id: str) -> None:
    """The access line of one request: the line ``access_log.info(msg, extra=fields)``
    writes, inside the request's span (``trace_id``/``span_id``, empty when untraced).

    Written straight to the handler's stream when nothing else would see the record (the
    access logger has no handler or filter of its own and the root has only ours), else
    through ``logging`` as any other line, so a test's or a user's handler still gets it."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    installed = _installed
    if (
        installed is None
        or access_log.handlers
        or access_log.filters
        or not access_log.propagate
        or len(_root.handlers) != 1
        or _root.handlers[0] is not installed[0]
        or installed[0].filters
        or installed[0].level > logging.INFO
    ):
        access_log.info(msg, extra=fields)
        return
    handler, formatter = installed
    entry = formatter.entry(time.time(), "info", ACCESS_LOGGER, msg, trace_id, span_id)
    entry.update(fields)
    line = json.dumps(entry, default=str) + handler.terminator
    with handler.lock:  # type: ignore[union-attr]  # StreamHandler always has one
        try:
            handler.stream.write(line)
            handler.stream.flush()
        except Exception:  # as logging does: a broken log stream never fails a request
            record = access_log.makeRecord(ACCESS_LOGGER, logging.INFO, "", 0, msg, (), None)
            handler.handleError(record)


def setup_logging(service: str, level: str = "INFO") -> None:
    """Route the root logger to stderr as JSON lines (gunicorn's own logs included)."""
    global _installed
    # Fields the JSON lines never show, so no record needs to gather them (the logging
    # HOWTO's "Optimization"): the caller's file and line, thread and process names.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter(service)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("gunicorn.error", "gunicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    _installed = (handler, formatter)
