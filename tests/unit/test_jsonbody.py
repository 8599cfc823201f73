"""Strict JSON bodies and problem+json: every rejection names what to fix, none is a 500."""

from __future__ import annotations

import json

import pytest
from flask import Flask, jsonify

from servoscope import problems
from servoscope.contract import Param
from servoscope.jsonbody import integer, json_object, number, reject_unknown


@pytest.fixture
def client():
    app = Flask("t")
    app.config["MAX_CONTENT_LENGTH"] = 256
    problems.install(app)

    @app.post("/cmd")
    def cmd():
        body = json_object()
        reject_unknown(body, {"channel", "angle"})
        return jsonify(
            channel=integer(body, "channel", minimum=0, maximum=5),
            angle=number(body, "angle", minimum=0.0, maximum=180.0),
        )

    @app.get("/read")
    def read():
        channel = Param("channel", "query", {"type": "integer", "minimum": 0, "maximum": 5})
        return jsonify(channel=channel.read())

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    return app.test_client()


def post(client, body, content_type="application/json"):
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post("/cmd", data=data, content_type=content_type)


def test_a_valid_body_passes(client) -> None:
    reply = post(client, {"channel": 1, "angle": 90})
    assert reply.status_code == 200
    assert reply.json == {"channel": 1, "angle": 90.0}


@pytest.mark.parametrize(
    ("body", "status", "field", "says"),
    [
        ('{"channel": 1, "angle":', 400, None, "not valid JSON"),
        ("[1, 2]", 400, None, "must be a JSON object"),
        ('{"channel": 1, "angle": NaN}', 400, None, "NaN"),
        ('{"channel": 1, "angle": Infinity}', 400, None, "Infinity"),
        ({"channel": 1}, 422, "angle", "required"),
        ({"channel": 1, "angle": "90"}, 422, "angle", "must be a number; got str"),
        ({"channel": 1, "angle": None}, 422, "angle", "from 0.0 to 180.0; got null"),
        ({"channel": None, "angle": 9}, 422, "channel", "from 0 to 5; got null"),
        ({"channel": True, "angle": 9}, 422, "channel", "must be an integer; got bool"),
        ({"channel": 1.5, "angle": 9}, 422, "channel", "must be an integer"),
        ({"channel": 9, "angle": 9}, 422, "channel", "from 0 to 5; got 9"),
        ({"channel": 1, "angle": 181}, 422, "angle", "from 0.0 to 180.0"),
        ({"channel": 1, "angle": 9, "speed": 3}, 422, "speed", "unknown field 'speed'"),
        ("\xff\xfe", 400, None, "not valid JSON"),
    ],
)
def test_bad_bodies_are_problems_naming_the_field(client, body, status, field, says) -> None:
    reply = post(client, body)
    assert reply.status_code == status
    assert reply.mimetype == "application/problem+json"
    problem = reply.json
    assert problem["status"] == status
    assert says in problem["detail"]
    assert problem.get("field") == field
    assert problem["instance"] == "/cmd"


def test_wrong_media_type_is_415(client) -> None:
    reply = post(client, {"channel": 1, "angle": 9}, content_type="text/plain")
    assert reply.status_code == 415
    assert "application/json" in reply.json["detail"]


def test_oversized_body_is_413(client) -> None:
    reply = post(client, {"channel": 1, "angle": 9, "pad": "x" * 1000})
    assert reply.status_code == 413
    assert reply.mimetype == "application/problem+json"


def test_query_integers_are_validated(client) -> None:
    assert client.get("/read?channel=2").json == {"channel": 2}
    assert client.get("/read").json["field"] == "channel"
    assert client.get("/read?channel=x").status_code == 422
    assert client.get("/read?channel=-1").status_code == 422


def test_unknown_route_and_method_are_problems(client) -> None:
    assert client.get("/nope").json["status"] == 404
    reply = client.get("/cmd")
    assert reply.status_code == 405
    assert reply.mimetype == "application/problem+json"
    assert "POST" in reply.headers["Allow"]


def test_an_unexpected_error_is_a_500_problem_without_internals(client) -> None:
    reply = client.get("/boom")
    assert reply.status_code == 500
    assert reply.mimetype == "application/problem+json"
    assert "secret" not in reply.get_data(as_text=True)
