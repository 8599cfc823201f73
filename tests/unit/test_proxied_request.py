"""The gateway reads a proxied request from the WSGI environ (gateway.proxy.ProxiedRequest):
every attribute the pipeline uses must equal what werkzeug's Request says for it."""

from __future__ import annotations

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from gateway.proxy import ProxiedRequest, outbound_headers

CASES = {
    "plain GET": {"path": "/api/servo/current-angle", "query_string": "channel=0"},
    "escaped and non-ASCII path": {"path": "/api/motion/moves/a%3Fb%20c%C3%A9"},
    "bytes that are not UTF-8": {"path": "/api/x/%FF%FE"},
    "body with a length": {"method": "POST", "data": b'{"channel": 1}'},
    "lower-case method": {"method": "get"},
    "https on its default port": {"base_url": "https://gw.example:443/"},
    "http on another port": {"base_url": "http://gw.example:8080/"},
}


def environ(**given) -> dict:
    return EnvironBuilder(**given).get_environ()


@pytest.mark.parametrize("given", CASES.values(), ids=CASES.keys())
def test_every_attribute_the_pipeline_reads_is_werkzeugs(given: dict) -> None:
    fields = {"Idempotency-Key": "k1", "X-Request-Deadline-Ms": "900"}
    # Two environs alike: each reads its own body.
    ours = ProxiedRequest(environ(headers=fields, **given))
    theirs = Request(environ(headers=fields, **given))
    for name in ("method", "path", "query_string", "content_length", "remote_addr", "scheme"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.host == theirs.host
    for field in ("Idempotency-Key", "x-request-deadline-ms", "Transfer-Encoding", "Content-Type"):
        assert ours.headers.get(field) == theirs.headers.get(field), field
    assert ours.stream.read() == theirs.stream.read()


@pytest.mark.parametrize("declared", ["12", "-1", "abc", " 7 ", "+5"])
def test_a_declared_length_reads_as_werkzeug_reads_it(declared: str) -> None:
    env = environ(method="POST", data=b"x" * 12)
    env["CONTENT_LENGTH"] = declared
    assert ProxiedRequest(env).content_length == Request(dict(env)).content_length


def test_a_chunked_body_has_no_length() -> None:
    env = environ(method="POST", data=b"abc", headers={"Transfer-Encoding": "chunked"})
    assert ProxiedRequest(env).content_length is None


def test_without_a_host_field_the_server_address_is_the_host() -> None:
    env = environ(base_url="http://gw.example:8080/")
    del env["HTTP_HOST"]
    assert ProxiedRequest(env).host == Request(dict(env)).host == "gw.example:8080"


def test_the_upstream_gets_the_callers_fields_minus_hop_by_hop_and_credentials() -> None:
    env = environ(
        path="/api/servo/set-position",
        method="POST",
        data=b"{}",
        content_type="application/json",
        headers={
            "Authorization": "Bearer secret",
            "Connection": "keep-alive, X-Private",
            "X-Private": "hop",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "X-Request-Id": "from-caller",
            "X-Forwarded-For": "10.0.0.1",
            "X-Forwarded-Host": "spoofed",
            "Accept": "application/json",
            "Idempotency-Key": "k1",
        },
        environ_base={"REMOTE_ADDR": "127.0.0.9"},
    )
    sent = outbound_headers(ProxiedRequest(env), "rid-1")
    assert sent == {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Idempotency-Key": "k1",
        "X-Forwarded-For": "10.0.0.1, 127.0.0.9",
        "X-Forwarded-Proto": "http",
        "X-Forwarded-Host": "localhost",
        "X-Request-ID": "rid-1",
    }
