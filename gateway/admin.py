"""``/admin/*``: breaker states and switches, and the route table in force. Admin scope only.

GET  /admin/breakers                                   every breaker's state
POST /admin/breakers/<upstream>/<instance>/<action>    action: open, close
GET  /admin/config                                     the parsed route table
"""

from __future__ import annotations

import dataclasses

from flask import Blueprint, Response, g, jsonify

from gateway.auth import require_scope
from gateway.pipeline import Pipeline
from servoscope.problems import Problem

ACTIONS = ("open", "close")  # close also forgets the counted failures


def blueprint(pipeline: Pipeline) -> Blueprint:
    admin = Blueprint("admin", __name__, url_prefix="/admin")

    @admin.before_request
    def _admin_only() -> None:
        require_scope(g.api_key, "admin")

    @admin.get("/breakers")
    def breakers() -> Response:
        return jsonify(
            breakers=[
                member.breaker.snapshot()
                for balancer in pipeline.balancers.values()
                for member in balancer.members
            ],
            shared_state="redis" if pipeline.shared.up else "local",
        )

    @admin.post("/breakers/<upstream>/<instance>/<action>")
    def force(upstream: str, instance: str, action: str) -> Response:
        if action not in ACTIONS:
            raise Problem(
                404, "Unknown Action", f"action must be one of {list(ACTIONS)}; got {action!r}"
            )
        balancer = pipeline.balancers.get(upstream)
        members = {m.instance.id: m for m in balancer.members} if balancer else {}
        if instance not in members:
            known = [
                f"{name}/{m.instance.id}"
                for name, b in pipeline.balancers.items()
                for m in b.members
            ]
            raise Problem(
                404, "Unknown Breaker", f"no breaker {upstream}/{instance}; known: {known}"
            )
        members[instance].breaker.force(action)
        return jsonify(members[instance].breaker.snapshot())

    @admin.get("/config")
    def config() -> Response:
        table = pipeline.table
        return jsonify(
            source=str(table.source),
            upstreams={n: dataclasses.asdict(u) for n, u in table.upstreams.items()},
            routes=[dataclasses.asdict(r) for r in table.routes],
        )

    return admin
