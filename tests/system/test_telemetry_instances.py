"""One setting, [instances] telemetry = 2, starts two telemetry loggers on one database;
the gateway balances over both and every sample is seen whichever instance answers."""

from __future__ import annotations

import json
import time

from stack.ephemeral import ephemeral_stack, http


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
