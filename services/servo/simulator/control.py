"""The simulator's control API (HTTP/JSON, on a daemon thread): its state, the targets
each channel was set to, and the fault switches (see :mod:`services.servo.simulator`).

A standard-library HTTP server rather than the services' Flask app factory: the
simulator is test equipment living beside the device thread in one small process (and
inside test processes), with no tracing, metrics or JSON logs of its own to set up.
Its errors are the stack's own problem+json (:mod:`servoscope.problems`: the same
types, documented in docs/problems.md and served at their URIs here too).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from servoscope.problems import MEDIA_TYPE, TYPE_BASE, Problem, catalogue_entry, problem_body

if TYPE_CHECKING:
    from services.servo.simulator.maestro import Simulator

log = logging.getLogger("maestro-simulator")

MAX_CONTROL_BODY = 64 * 1024


class ControlServer:
    """The HTTP/JSON control interface, on a daemon thread."""

    def __init__(self, simulator: Simulator, host: str, port: int) -> None:
        handler = type("Handler", (ControlHandler,), {"simulator": simulator})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="maestro-control", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class ControlHandler(BaseHTTPRequestHandler):
    simulator: Simulator
    server_version = "maestro-simulator"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("control: " + format, *args)

    def _send(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _ok(self, body: dict[str, Any]) -> None:
        self._send(200, json.dumps(body).encode(), "application/json")

    def _problem(self, problem: Problem) -> None:
        self._send(
            problem.status, json.dumps(problem_body(problem, self.path)).encode(), MEDIA_TYPE
        )

    def _route(self) -> tuple[str, str | None]:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/state":
            return "state", None
        if path == "/faults":
            return "faults", None
        if path.startswith("/targets/") and path.count("/") == 2:
            return "targets", path.removeprefix("/targets/")
        if path.startswith("/faults/") and path.count("/") == 2:
            return "fault", path.removeprefix("/faults/")
        if path.startswith(TYPE_BASE) and path.count("/") == 2:
            return "problem", path.removeprefix(TYPE_BASE)
        return "unknown", None

    def _not_allowed(self, allowed: str) -> None:
        detail = f"{self.command} is not supported on {self.path}; use {allowed}"
        self._problem(Problem(405, "Method Not Allowed", detail, slug="method-not-allowed"))

    def _not_found(self) -> None:
        detail = (
            f"no such resource {self.path}; "
            "use /state, /targets/<channel>, /faults or /faults/<mode>"
        )
        self._problem(Problem(404, "Not Found", detail, slug="not-found"))

    def _read_params(self) -> dict[str, Any] | None:
        """The JSON object body, {} if none; None after answering 4xx."""
        length_header = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            detail = "send the body with a Content-Length header"
            self._problem(Problem(400, "Bad Request", detail, slug="bad-request"))
            return None
        if not length_header:
            return {}
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_CONTROL_BODY:
            self.close_connection = True
            detail = (
                f"Content-Length must be an integer in 0..{MAX_CONTROL_BODY}, got {length_header!r}"
            )
            if length < 0:
                self._problem(Problem(400, "Bad Request", detail, slug="bad-request"))
            else:
                self._problem(Problem(413, "Content Too Large", detail, slug="content-too-large"))
            return None
        raw = self.rfile.read(length)
        if not raw.strip():
            return {}
        try:
            params = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            detail = f"body is not valid JSON: {exc}"
            self._problem(Problem(400, "Malformed JSON", detail, slug="malformed-json"))
            return None
        if not isinstance(params, dict):
            detail = 'body must be a JSON object of parameters, e.g. {"latency_s": 0.2}'
            self._problem(Problem(400, "Malformed JSON", detail, slug="malformed-json"))
            return None
        return params

    def do_GET(self) -> None:
        route, name = self._route()
        if route == "state":
            self._ok(self.simulator.snapshot())
        elif route == "targets" and name is not None and name.isdigit():
            channel = int(name)
            self._ok({"channel": channel, "targets": self.simulator.targets(channel)})
        elif route == "faults":
            self._ok({"faults": self.simulator.snapshot()["faults"]})
        elif route == "fault":
            self._not_allowed("PUT or DELETE")
        elif route == "problem" and (entry := catalogue_entry(name or "")) is not None:
            self._send(200, entry.encode(), "text/markdown; charset=utf-8")
        else:
            self._not_found()

    def do_PUT(self) -> None:
        route, mode = self._route()
        if route != "fault" or mode is None:
            if route == "unknown":
                self._not_found()
            else:
                self._not_allowed("GET" if route in ("state", "problem") else "GET or DELETE")
            return
        params = self._read_params()
        if params is None:
            return
        self._change_faults(lambda: self.simulator.set_fault(mode, **params))

    def do_DELETE(self) -> None:
        route, mode = self._route()
        if route in ("state", "problem"):
            self._not_allowed("GET")
            return
        if route == "unknown":
            self._not_found()
            return
        self._change_faults(lambda: self.simulator.clear_fault(mode))

    def _change_faults(self, change: Callable[[], dict[str, Any]]) -> None:
        """Answer the faults after ``change``, or the problem with the fault it refused."""
        try:
            faults = change()
        except ValueError as exc:
            self._problem(Problem(400, "Invalid Fault", str(exc), slug="invalid-fault"))
            return
        self._ok({"faults": faults})

    def do_POST(self) -> None:
        route, _ = self._route()
        if route == "unknown":
            self._not_found()
        else:
            self._not_allowed(
                {"state": "GET", "problem": "GET", "faults": "GET or DELETE"}.get(
                    route, "PUT or DELETE"
                )
            )

    do_PATCH = do_POST
