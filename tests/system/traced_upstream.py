"""A servoscope service for the gateway's trace tests: the real app factory (so it
traces into Jaeger like every service), with one endpoint that fails on demand.

    GET /flaky?tag=t&fail_first=1&status=503   first N calls of a tag answer ``status``
"""

from __future__ import annotations

import threading

from flask import Flask, Response, jsonify, request

from servoscope.appfactory import create_app as create_base_app

_hits: dict[str, int] = {}
_lock = threading.Lock()


def create_app() -> Flask:
    app = create_base_app("test-upstream")

    @app.get("/flaky")
    def flaky() -> Response:
        tag = request.args.get("tag", "")
        with _lock:
            _hits[tag] = count = _hits.get(tag, 0) + 1
        if count <= int(request.args.get("fail_first", 0)):
            reply = jsonify(failed=count)
            reply.status_code = int(request.args.get("status", 503))
            return reply
        return jsonify(ok=True, hit=count)

    return app
