"""Redis work per request of a gateway sharing its state: commands and round trips.

A real gateway (gunicorn, 2 workers, state in a real redis-server) in front of the
component tests' upstream; 200 GET requests (after 20 of warm-up) through one route with
every shared stage on (rate limit, retry budget, breaker). Redis's own counters are read
before and after (``INFO stats``, ``INFO commandstats``): ``total_reads_processed`` counts
the reads Redis served, one per round trip (a pipeline or a script is one), and
commandstats counts every command, those a script runs included.

    .venv/bin/python -m bench.shared_state_trips [--requests 200]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import redis

from stack.ephemeral import terminate, wait_for
from tests.component.gatewayrig import start_gateway, start_redis, start_upstream

WORKERS = 2
ROUTES = """
defaults:
  rate_limit: {{enabled: true, requests: 100000, per_s: 1}}  # on, and never the answer
upstreams:
  up: {{instances: ["{url}"]}}
routes:
  r:
    prefix: /t
    upstream: up
    operations: [{{method: GET, path: /echo, scope: read}}]
"""


def counters(client: redis.Redis) -> tuple[int, dict[str, int]]:
    reads = int(client.info("stats")["total_reads_processed"])
    stats = client.info("commandstats")
    return reads, {name[len("cmdstat_") :]: int(v["calls"]) for name, v in stats.items()}


def measure(requests: int, warmup: int = 20) -> dict[str, object]:
    upstream, store = start_upstream("u"), start_redis()
    try:
        with tempfile.TemporaryDirectory() as work:
            gateway = start_gateway(
                Path(work), ROUTES.format(url=upstream.url), workers=WORKERS, redis_port=store.port
            )
            try:
                client = redis.Redis(port=store.port)
                # Every worker connects (and pings) as it boots: wait for both, so no
                # boot is counted as a request's work. This client is the third.
                wait_for(
                    lambda: int(client.info("clients")["connected_clients"]) >= WORKERS + 1,
                    timeout=30,
                    message="both gateway workers on redis",
                )
                for _ in range(warmup):
                    assert gateway.api("GET", "/t/echo").status == 200
                reads0, calls0 = counters(client)
                reads1, _ = counters(client)  # what reading the counters costs
                for _ in range(requests):
                    assert gateway.api("GET", "/t/echo").status == 200
                reads2, calls2 = counters(client)
                # A Redis call past its 0.2 s timeout (a busy machine) sends a worker to
                # local state for a second, then it pings: not the figure sought.
                fell_back = "redis unavailable" in gateway.log()
            finally:
                terminate(gateway.process)
    finally:
        terminate(upstream.process)
        terminate(store.process)
    own = reads1 - reads0
    calls = {
        name: calls2[name] - calls0.get(name, 0)
        for name in calls2
        if name != "info" and calls2[name] != calls0.get(name, 0)
    }
    return {
        "fell_back": fell_back,
        "round_trips": (reads2 - reads1 - own) / requests,
        "commands": sum(calls.values()) / requests,
        "by_command": {name: n / requests for name, n in sorted(calls.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    result = measure(parser.parse_args().requests)
    print(
        f"per request: {result['round_trips']:.2f} round trips, {result['commands']:.2f} commands"
    )
    if result["fell_back"]:
        print("  not representative: a worker fell back to local state during the run")
    for name, per in result["by_command"].items():  # type: ignore[union-attr]
        print(f"  {name:<10} {per:.2f}")


if __name__ == "__main__":
    main()
