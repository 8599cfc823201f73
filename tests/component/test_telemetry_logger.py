"""The telemetry logger as real gunicorn processes on a real SQLite file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from servoscope.settings import REPO_ROOT
from stack.components import gunicorn_argv
from stack.ephemeral import answers_ok, free_ports, http, standalone_env, wait_for

NOW = time.time()


class Logger:
    def __init__(self, database: Path, **settings: str) -> None:
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        env = standalone_env(
            self.port,
            SERVOSCOPE_TELEMETRY_LOGGER_DATABASE=str(database),
            **{f"SERVOSCOPE_TELEMETRY_LOGGER_{k.upper()}": v for k, v in settings.items()},
        )
        self.process = subprocess.Popen(
            gunicorn_argv("services.telemetry.app:create_app()"),
            cwd=REPO_ROOT,
            env=env,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(lambda: answers_ok(self.url + "/healthz"), 20, message="the logger up")

    def post(self, body, *, key: str | None = None, content_type: str = "application/json"):
        headers = {"Content-Type": content_type}
        if key:
            headers["Idempotency-Key"] = key
        data = body if isinstance(body, bytes | str) else json.dumps(body)
        return http("POST", self.url + "/samples", body=data, headers=headers)

    def get(self, query: str = "") -> dict:
        reply = http("GET", self.url + "/samples" + query)
        assert reply.status == 200, reply.body
        return reply.json()

    def stats(self) -> dict:
        return http("GET", self.url + "/stats").json()

    def kill(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(10)


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "telemetry.sqlite3"


@pytest.fixture
def logger(database: Path) -> Iterator[Logger]:
    running = Logger(database)
    yield running
    running.kill()


def batch(count: int, channel: int = 0, start: float = NOW) -> list[dict]:
    return [
        {"channel": channel, "angle": i * 0.5, "target_angle": 90.0, "ts": start + i * 0.02}
        for i in range(count)
    ]


def test_a_batch_is_stored_and_paged_back_in_order(logger: Logger) -> None:
    reply = logger.post(batch(250))
    assert reply.status == 202, reply.body
    assert reply.json()["accepted"] == 250

    seen, cursor = [], ""
    for _ in range(10):
        page = logger.get(f"?limit=100{cursor}")
        seen += page["samples"]
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert [s["angle"] for s in seen] == [i * 0.5 for i in range(250)]
    assert len({s["id"] for s in seen}) == 250


def test_filters_by_channel_and_time(logger: Logger) -> None:
    assert logger.post(batch(10, channel=1) + batch(5, channel=2)).status == 202
    assert len(logger.get("?channel=2")["samples"]) == 5
    since, until = NOW + 0.05, NOW + 0.11  # ts of samples 3, 4, 5 (0.06, 0.08, 0.10)
    picked = logger.get(f"?channel=1&since={since}&until={until}")["samples"]
    assert [round(s["ts"] - NOW, 2) for s in picked] == [0.06, 0.08, 0.10]
    stats = logger.stats()
    assert stats["samples"] == 15
    assert [c["samples"] for c in stats["channels"]] == [10, 5]


def test_a_bad_batch_lists_every_bad_sample_and_stores_none(logger: Logger) -> None:
    samples = batch(5)
    samples[1]["angle"] = "north"
    samples[3]["ts"] = 12.0  # milliseconds since boot, not Unix seconds
    samples[4]["extra"] = 1
    reply = logger.post(samples)
    assert reply.status == 422
    assert reply.headers["Content-Type"] == "application/problem+json"
    errors = reply.json()["errors"]
    assert [(e["index"], e["field"]) for e in errors] == [(1, "angle"), (3, "ts"), (4, "extra")]
    assert logger.stats()["samples"] == 0


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        ("[", "application/json", 400),
        ('{"channel": 0}', "application/json", 422),
        ("[]", "application/json", 422),
        (json.dumps(batch(1001)), "application/json", 422),
        (json.dumps(batch(1)), "text/csv", 415),
        ("[" + "0," * 400_000 + "0]", "application/json", 413),
        ('[{"channel":0,"angle":NaN,"target_angle":0,"ts":1.8e9}]', "application/json", 400),
    ],
    ids=["malformed", "object", "empty", "too-many", "media-type", "too-large", "nan"],
)
def test_malformed_batches_are_problems(logger: Logger, body, content_type, status) -> None:
    reply = logger.post(body, content_type=content_type)
    assert reply.status == status, reply.body
    assert reply.json()["status"] == status
    assert logger.stats()["samples"] == 0


def test_a_client_still_sending_a_refused_body_gets_the_413(logger: Logger) -> None:
    """The refused body is read to its end before the connection closes: closing on unread
    input resets the connection, and the sender would see a broken pipe, not the 413."""
    body = b"[" + b"0," * 3_900_000 + b"0]"  # 7.8 MB, far over the route's 64 KiB
    for _ in range(5):
        reply = logger.post(body)
        assert reply.status == 413, reply.body
        assert reply.json()["type"].endswith("/content-too-large")


def test_a_retried_batch_is_stored_once(logger: Logger) -> None:
    first = logger.post(batch(3), key="batch-0001")
    again = logger.post(batch(3), key="batch-0001")
    assert first.status == again.status == 202
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert logger.stats()["samples"] == 3
    reused = logger.post(batch(4), key="batch-0001")
    assert reused.status == 422
    assert logger.stats()["samples"] == 3


def test_an_acknowledged_batch_survives_kill_9(database: Path) -> None:
    first = Logger(database)
    try:
        assert first.post(batch(500)).status == 202
    finally:
        first.kill(signal.SIGKILL)
    second = Logger(database)
    try:
        assert second.stats()["samples"] == 500
    finally:
        second.kill()


def test_two_instances_share_the_same_data(database: Path) -> None:
    one, two = Logger(database), Logger(database)
    try:
        assert one.post(batch(7, channel=3)).status == 202
        assert two.post(batch(4, channel=4)).status == 202
        assert one.stats()["samples"] == two.stats()["samples"] == 11
    finally:
        one.kill()
        two.kill()


def test_retention_keeps_the_newest_rows(database: Path) -> None:
    limited = Logger(database, max_rows="5", retention_period_s="0.2")
    try:
        assert limited.post(batch(8)).status == 202
        wait_for(lambda: limited.stats()["samples"] == 5, 5, message="retention by rows")
        kept = [s["angle"] for s in limited.get()["samples"]]
        assert kept == [1.5, 2.0, 2.5, 3.0, 3.5]
    finally:
        limited.kill()
