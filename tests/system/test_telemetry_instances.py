"""One setting, [instances] telemetry = 2, starts two telemetry loggers on one database;
the gateway balances over both and every sample is seen whichever instance answers. On
PostgreSQL, the two loggers also split the sample stream as competing consumers."""

from __future__ import annotations

import json
import re
import time

from servoscope import streams
from stack.ephemeral import ephemeral_stack, http, wait_for


def test_two_telemetry_instances_behind_the_gateway_serve_the_same_data(tmp_path) -> None:
    with ephemeral_stack(tmp_path / "run", SERVOSCOPE_INSTANCES_TELEMETRY="2") as stack:
        pids = stack.pids()
        assert {"telemetry-logger", "telemetry-logger_2"} <= set(pids)
        direct = [stack.url("telemetry"), stack.url("telemetry_2")]

        # The servo controller publishes its own samples meanwhile; channel 20 is ours alone.
        before = [http("GET", url + "/samples?channel=20").json()["samples"] for url in direct]
        assert before == [[], []]
        batch = [
            {"channel": 20, "angle": 1.0 * i, "target_angle": 0.0, "ts": time.time()}
            for i in range(10)
        ]
        for i in range(6):  # round-robin: both instances take some of these
            reply = stack.api(
                "POST",
                "/api/telemetry/samples",
                body=json.dumps(batch),
                headers={"Idempotency-Key": f"instances-{i}"},
            )
            assert reply.status == 202, reply.body

        served = {
            len(stack.api("GET", "/api/telemetry/samples?channel=20&limit=1000").json()["samples"])
            for _ in range(4)
        }
        assert served == {60}  # whichever instance answers, all 60 are there
        counts = [
            http("GET", url + "/samples?channel=20&limit=1000").json()["samples"] for url in direct
        ]
        assert len(counts[0]) == len(counts[1]) == 60
        handled = [
            http("GET", url + "/metrics").body.decode().count('http_route="/samples"')
            for url in direct
        ]
        assert all(handled), "the gateway sent every request to one instance"


def test_two_loggers_on_postgresql_split_one_stream_with_no_duplicate_and_no_gap(tmp_path) -> None:
    with ephemeral_stack(
        tmp_path / "run",
        SERVOSCOPE_INSTANCES_TELEMETRY="2",
        SERVOSCOPE_TELEMETRY_LOGGER_STORE="postgres",
        SERVOSCOPE_STREAMS_CLAIM_IDLE_S="2",
    ) as stack:
        assert "postgres" in stack.pids()
        direct = [stack.url("telemetry"), stack.url("telemetry_2")]
        assert {http("GET", u + "/stats").json()["backend"] for u in direct} == {"postgres"}
        redis_url = f"redis://127.0.0.1:{stack.settings.port('redis')}/0"
        client = streams.connect(redis_url, 2.0)
        publisher = streams.StreamPublisher(redis_url, streams.SAMPLES, streams.StreamOptions())
        total, dead_read = 3000, 0
        for seq in range(total):
            publisher.publish(
                {"producer": "split-test", "seq": seq, "channel": 20, "angle": 1.0,
                 "target_angle": 1.0, "ts": time.time()},
                traced=False,
            )  # fmt: skip
            if seq % 500 == 499:
                assert publisher.flush_once()
                # A third consumer takes its share and dies without acknowledging it.
                taken = client.xreadgroup(
                    streams.GROUP, "dead-logger", {streams.SAMPLES: ">"}, count=50
                )
                dead_read += sum(len(entries) for _, entries in taken or [])
        assert dead_read > 0

        def stored() -> list[int]:
            rows, cursor = [], "0"
            while cursor is not None:
                page = http(
                    "GET", f"{direct[0]}/samples?channel=20&limit=1000&cursor={cursor}"
                ).json()
                rows += [row["seq"] for row in page["samples"]]
                cursor = page["next_cursor"]
            return rows

        def complete() -> list[int] | None:
            rows = stored()
            return rows if len(rows) >= total else None

        seqs = wait_for(complete, 60, interval=1, message="every sample stored")
        assert sorted(seqs) == list(range(total))  # no gap, no duplicate
        handled = [
            metric(url, f'telemetry_stream_entries_handled_total{{stream="{streams.SAMPLES}"}}')
            for url in direct
        ]
        assert all(handled), f"one logger took the whole stream: {handled}"
        redelivered = sum(
            metric(url, f'telemetry_stream_redeliveries_total{{stream="{streams.SAMPLES}"}}')
            for url in direct
        )
        assert redelivered >= dead_read
        backlog = streams.backlog(client, streams.SAMPLES)
        assert backlog.pending == 0 and backlog.trimmed_unconsumed == 0


def metric(url: str, series: str) -> float:
    text = http("GET", url + "/metrics").body.decode()
    match = re.search(rf"^{re.escape(series)} ([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0
