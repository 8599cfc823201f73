"""The gateway's cost: throughput against nginx, and the latency it adds, side by side.

On one trivial upstream endpoint and at one concurrency, wrk measures requests/s
direct to the upstream, through nginx (Debian's, keep-alive to the upstream, our own
process with a generated config), and through the gateway (full pipeline on) with
tracing on (the stack's default sampling, into a real Jaeger) and off, with the CPU
its processes spent per request; a reference proxy with the gateway's client and tracing
and nothing else (bench/bare_proxy.py) shows what this machine allows. Then, at half
the gateway's own max rate, wrk paced by a Lua ``delay()`` measures p50 direct and
through the gateway: the difference is what the gateway adds.

Run with ``make bench TOPICS=gateway``.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import textwrap
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.report import BenchContext, Section, median
from servoscope.settings import REPO_ROOT
from stack.components import JAEGER_ARGV, JAEGER_PORTS, jaeger_env
from stack.ephemeral import DEV_KEY, free_ports, http, terminate, wait_for

CONNECTIONS = 32
WRK_THREADS = 2
DURATION_S = 6
PACED_CONNECTIONS = 8
BARE = "reference: bare proxy on gevent (bench/bare_proxy.py)"
GTHREAD = "gateway, tracing on, gthread worker (1 x 16 threads; the former default)"
SHARED = "gateway, tracing on, 2 gevent workers, state shared in Redis"
# [telemetry] sampling_ratio as production runs it, beside the stack's 1.0 (every trace).
SAMPLING_RATIOS = (0.1, 0.01)
UNTRACED = "gateway, tracing off"
TRACED = "gateway, tracing on, sampling ratio 1 (every request)"
# CPU per request against the bare proxy's, untraced and traced (at ratio 1.0): at most.
CPU_TARGETS = {
    "tracing off": (UNTRACED, f"{BARE}, tracing off", 1.5),
    "tracing on": (TRACED, f"{BARE}, tracing on", 1.3),
}
UPSTREAM_PATH = "/ok"
ROUTES = """
defaults:
  rate_limit: {{enabled: true, requests: 100000000, per_s: 1}}
  bulkhead: {{max_concurrent: 64, max_wait_s: 0.1}}
upstreams:
  trivial: {{instances: ["{url}"]}}
routes:
  trivial:
    prefix: /bench
    upstream: trivial
    operations: [{{method: GET, path: /ok, scope: read}}]
"""
NGINX_CONF = """
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
daemon off;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {work}/body;
  proxy_temp_path {work}/proxy;
  fastcgi_temp_path {work}/fastcgi;
  uwsgi_temp_path {work}/uwsgi;
  scgi_temp_path {work}/scgi;
  upstream trivial {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://trivial;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float | None = None  # CPU of the measured proxy's processes per request


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its descendants (a gunicorn master and its workers)."""
    total, pending = 0.0, [pid]
    tick = os.sysconf("SC_CLK_TCK")
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
    return total


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, *, connections: int, duration: int, script: Path | None = None) -> Run:
    argv = ["wrk", f"-t{min(WRK_THREADS, connections)}", f"-c{connections}", f"-d{duration}s"]
    argv += ["--latency", "-H", f"Authorization: Bearer {DEV_KEY}"]
    if script is not None:
        argv += ["-s", str(script)]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert p50 and p99, out
    if "Non-2xx" in out or "Socket errors" in out:
        print(out, flush=True)
    return Run(rps, _ms(*p50.groups()), _ms(*p99.groups()))


def paced_script(work: Path, rate: float, connections: int) -> Path:
    """A wrk script that sleeps between requests so the total rate is about ``rate``/s."""
    delay_ms = max(1, round(connections * 1000 / rate))
    script = work / f"paced-{delay_ms}.lua"
    script.write_text(f"function delay()\n  return {delay_ms}\nend\n")
    return script


def _answers(url: str) -> bool:
    try:
        return http("GET", url, timeout=1).status < 500
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def process(argv: list[str], log: Path, ready_url: str, **kwargs) -> Iterator[subprocess.Popen]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
        )
    try:
        wait_for(lambda: proc.poll() is None and _answers(ready_url), timeout=30, message=argv[0])
        yield proc
    finally:
        terminate(proc, grace_s=10)


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVOSCOPE_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def gunicorn(app: str, port: int, env: dict[str, str], workers: int, threads: int) -> list[str]:
    env.update(
        SERVOSCOPE_BIND=f"127.0.0.1:{port}",
        SERVOSCOPE_WORKERS=str(workers),
        SERVOSCOPE_THREADS=str(threads),
    )
    return [sys.executable, "-m", "gunicorn", "-c", "python:servoscope.gunicorn_conf", app]


@contextlib.contextmanager
def upstream(work: Path) -> Iterator[str]:
    (port,) = free_ports(1)
    env = base_env()
    argv = gunicorn("bench.trivial_upstream:app", port, env, workers=1, threads=8)
    url = f"http://127.0.0.1:{port}"
    with process(argv, work / "upstream.log", url + UPSTREAM_PATH, cwd=REPO_ROOT, env=env):
        yield url


@contextlib.contextmanager
def nginx(work: Path, upstream_url: str) -> Iterator[str]:
    (port,) = free_ports(1)
    conf = work / "nginx.conf"
    upstream_port = int(upstream_url.rsplit(":", 1)[1])
    conf.write_text(NGINX_CONF.format(work=work, port=port, upstream_port=upstream_port))
    url = f"http://127.0.0.1:{port}"
    argv = ["nginx", "-c", str(conf), "-p", str(work)]
    with process(argv, work / "nginx.log", url + UPSTREAM_PATH):
        yield url


@contextlib.contextmanager
def jaeger(work: Path) -> Iterator[int]:
    ports = dict(zip(JAEGER_PORTS, free_ports(len(JAEGER_PORTS)), strict=True))
    env = {**os.environ, **jaeger_env("127.0.0.1", ports)}
    argv = JAEGER_ARGV
    health = f"http://127.0.0.1:{ports['health']}/status"
    with process(argv, work / "jaeger.log", health, env=env):
        yield ports["otlp_http"]


@contextlib.contextmanager
def redis(work: Path) -> Iterator[int]:
    (port,) = free_ports(1)
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no"]
    with log_process(argv, work / "redis.log"):
        wait_for(lambda: _port_open(port), timeout=10, message="redis")
        yield port


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def log_process(argv: list[str], log: Path) -> Iterator[subprocess.Popen]:
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.contextmanager
def gateway(
    work: Path,
    upstream_url: str,
    *,
    otlp_port: int | None,
    workers: int = 1,
    threads: int = 16,
    worker_class: str | None = None,
    redis_port: int | None = None,
    sampling_ratio: float = 1.0,
) -> Iterator[tuple[str, int]]:
    (port,) = free_ports(1)
    routes = work / "routes.yaml"
    routes.write_text(textwrap.dedent(ROUTES.format(url=upstream_url)))
    env = base_env()
    env.update(
        SERVOSCOPE_SERVICE="gateway",
        SERVOSCOPE_PORTS_GATEWAY=str(port),
        SERVOSCOPE_GATEWAY_ROUTES_FILE=str(routes),
        SERVOSCOPE_GATEWAY_SHARED_STATE="redis" if redis_port else "local",
        SERVOSCOPE_PORTS_REDIS=str(redis_port or 0),
        SERVOSCOPE_GATEWAY_WORKERS=str(workers),
        SERVOSCOPE_TELEMETRY_ENABLED="true" if otlp_port else "false",
        SERVOSCOPE_PORTS_JAEGER_OTLP_HTTP=str(otlp_port or 0),
        SERVOSCOPE_TELEMETRY_SAMPLING_RATIO=str(sampling_ratio),
    )
    env["SERVOSCOPE_GATEWAY_THREADS"] = str(threads)
    argv = gunicorn("gateway.app:create_app()", port, env, workers, threads)
    if worker_class is not None:  # else servoscope.toml's, as on the stack
        argv += ["-k", worker_class]
    url = f"http://127.0.0.1:{port}"
    log = work / f"gateway-{port}.log"
    with process(argv, log, url + "/healthz", cwd=REPO_ROOT, env=env) as proc:
        yield url + "/bench", proc.pid


@contextlib.contextmanager
def bare_proxy(
    work: Path, upstream_url: str, *, otlp_port: int | None
) -> Iterator[tuple[str, int]]:
    """bench/bare_proxy.py under gunicorn's gevent worker, like the gateway."""
    (port,) = free_ports(1)
    env = base_env()
    env.update(
        SERVOSCOPE_SERVICE="bare-proxy",
        BARE_PROXY_UPSTREAM=upstream_url,
        SERVOSCOPE_TELEMETRY_ENABLED="true" if otlp_port else "false",
        SERVOSCOPE_PORTS_JAEGER_OTLP_HTTP=str(otlp_port or 0),
    )
    argv = [*gunicorn("bench.bare_proxy:app", port, env, 1, 1), "-k", "gevent"]
    url = f"http://127.0.0.1:{port}"
    with process(
        argv, work / "bare-proxy.log", url + UPSTREAM_PATH, cwd=REPO_ROOT, env=env
    ) as proc:
        yield url, proc.pid


@dataclass
class Target:
    """One path to the upstream under test, with the pid of the proxy's process tree."""

    url: str
    pid: int | None = None


def measure(target: Target) -> Run:
    before = cpu_seconds(target.pid) if target.pid else 0.0
    run = wrk(target.url, connections=CONNECTIONS, duration=DURATION_S)
    if target.pid:
        run.cpu_us = (cpu_seconds(target.pid) - before) * 1e6 / (run.rps * DURATION_S)
    return run


def interleaved(
    ctx: BenchContext, targets: dict[str, Target], loads: list[float]
) -> dict[str, list[Run]]:
    """``ctx.repeats`` rounds, each measuring every target once, in an order that rotates
    from round to round: a spell of load from elsewhere on the machine then falls on
    every target alike instead of on whichever was being measured at the time."""
    for name, target in targets.items():
        ctx.say(f"gateway bench: warm-up, {name}")
        wrk(target.url, connections=CONNECTIONS, duration=2)  # pools, caches, first spans
    runs: dict[str, list[Run]] = {name: [] for name in targets}
    names = list(targets)
    for round_ in range(ctx.repeats):
        shift = round_ * max(1, len(names) // ctx.repeats)
        order = names[shift % len(names) :] + names[: shift % len(names)]
        loads.append(os.getloadavg()[0])
        ctx.say(f"gateway bench: round {round_ + 1} of {ctx.repeats}, load {loads[-1]:.1f}")
        for name in order:
            runs[name].append(measure(targets[name]))
    return runs


def summary(runs: list[Run]) -> Run:
    cpu = [r.cpu_us for r in runs if r.cpu_us is not None]
    return Run(
        median([r.rps for r in runs]),
        median([r.p50_ms for r in runs]),
        median([r.p99_ms for r in runs]),
        median(cpu) if cpu else None,
    )


def run(ctx: BenchContext) -> Section:
    """Every proxy is started first and stays up; then the rounds of :func:`interleaved`."""
    work = ctx.work_dir / "gateway"
    work.mkdir(parents=True, exist_ok=True)
    traced = TRACED
    loads = [os.getloadavg()[0]]
    with contextlib.ExitStack() as stack:
        upstream_url = stack.enter_context(upstream(work))
        direct = Target(upstream_url + UPSTREAM_PATH)
        otlp = stack.enter_context(jaeger(work))
        redis_port = stack.enter_context(redis(work))

        def proxy(url_pid: tuple[str, int]) -> Target:
            url, pid = url_pid
            return Target(url + UPSTREAM_PATH, pid)

        ctx.say("gateway bench: starting nginx, the bare proxy and every gateway")
        targets = {
            "direct": direct,
            "nginx": Target(stack.enter_context(nginx(work, upstream_url)) + UPSTREAM_PATH),
            f"{BARE}, tracing off": proxy(
                stack.enter_context(bare_proxy(work, upstream_url, otlp_port=None))
            ),
            f"{BARE}, tracing on": proxy(
                stack.enter_context(bare_proxy(work, upstream_url, otlp_port=otlp))
            ),
            UNTRACED: proxy(stack.enter_context(gateway(work, upstream_url, otlp_port=None))),
            traced: proxy(stack.enter_context(gateway(work, upstream_url, otlp_port=otlp))),
        }
        for sampled in SAMPLING_RATIOS:
            targets[f"gateway, tracing on, sampling ratio {sampled:g}"] = proxy(
                stack.enter_context(
                    gateway(work, upstream_url, otlp_port=otlp, sampling_ratio=sampled)
                )
            )
        targets[GTHREAD] = proxy(
            stack.enter_context(gateway(work, upstream_url, otlp_port=otlp, worker_class="gthread"))
        )
        targets[SHARED] = proxy(
            stack.enter_context(
                gateway(work, upstream_url, otlp_port=otlp, workers=2, redis_port=redis_port)
            )
        )
        runs = interleaved(ctx, targets, loads)
        results = {name: summary(r) for name, r in runs.items()}
        rate = results[traced].rps / 2
        script = paced_script(work, rate, PACED_CONNECTIONS)
        ctx.say(f"gateway bench: paced at {rate:.0f}/s")
        paced_runs: dict[str, list[Run]] = {"direct": [], traced: []}
        for _ in range(ctx.repeats):
            for name in paced_runs:
                paced_runs[name].append(
                    wrk(
                        targets[name].url,
                        connections=PACED_CONNECTIONS,
                        duration=DURATION_S,
                        script=script,
                    )
                )
        paced = {name: summary(r) for name, r in paced_runs.items()}
        loads.append(os.getloadavg()[0])
    nginx_rps = results["nginx"].rps
    rows: list[list[object]] = [
        [
            name,
            f"{r.rps:,.0f}",
            f"{r.rps / nginx_rps:.2f}",
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
            "" if r.cpu_us is None else f"{r.cpu_us:,.0f}",
        ]
        for name, r in sorted(results.items(), key=lambda item: item[0].startswith(BARE))
    ]
    added = paced[traced].p50_ms - paced["direct"].p50_ms
    rows.append(
        [
            f"paced at about {paced[traced].rps:,.0f}/s (half the traced max): direct vs gateway",
            "",
            "",
            f"{paced['direct'].p50_ms:.2f} vs {paced[traced].p50_ms:.2f} (+{added:.2f})",
            f"{paced['direct'].p99_ms:.2f} vs {paced[traced].p99_ms:.2f}",
            "",
        ]
    )
    ratio = results[traced].rps / nginx_rps
    cpu_notes = []
    for tracing, (ours, bare, target) in CPU_TARGETS.items():
        ours_cpu, bare_cpu = results[ours].cpu_us, results[bare].cpu_us
        per_round = [
            a.cpu_us / b.cpu_us
            for a, b in zip(runs[ours], runs[bare], strict=True)
            if a.cpu_us and b.cpu_us
        ]
        if ours_cpu and bare_cpu and per_round:
            times = median(per_round)
            cpu_notes.append(
                f"CPU per request, {tracing}: gateway {ours_cpu:,.0f} us against the bare "
                f"proxy's {bare_cpu:,.0f}; {times:.2f}x (median of the {len(per_round)} rounds' "
                f"ratios, from {min(per_round):.2f} to {max(per_round):.2f}; target <= "
                f"{target}x: {'met' if times <= target else 'NOT met'})."
            )
    untraced_cpu = results[UNTRACED].cpu_us or 0.0
    costs = ", ".join(
        f"{sampled:g}: {(results[name].cpu_us or 0.0) - untraced_cpu:+,.0f} us"
        for sampled, name in [(1.0, traced)]
        + [(r, f"gateway, tracing on, sampling ratio {r:g}") for r in SAMPLING_RATIOS]
    )
    return Section(
        title="Gateway: throughput against nginx, latency added",
        headers=[
            "path to the trivial upstream",
            "req/s",
            "x nginx",
            "p50 ms",
            "p99 ms",
            "gateway CPU us/req",
        ],
        rows=rows,
        notes=[
            f"wrk -t{WRK_THREADS} -c{CONNECTIONS} -d{DURATION_S}s. Every proxy is started "
            "first and stays up; after a 2 s warm-up each, "
            f"{ctx.repeats} rounds measure every row once, in an order that rotates from round "
            "to round, so a spell of other load on the machine falls on every row alike; each "
            "figure is the median of its rounds. wrk, nginx, the upstream, the gateways, the "
            f"bare proxies and Jaeger all share this machine's {os.cpu_count()} cores; load "
            f"average (1 min) from {min(loads):.1f} to {max(loads):.1f} at the start, each "
            "round's start and the end.",
            "Upstream: a bare WSGI function answering 12 bytes of JSON under gunicorn "
            "(gthread, 1 worker, 8 threads). nginx: 1 worker, keep-alive pool of 64 to it.",
            "Gateway rows: the stack's configuration (gunicorn's gevent worker, 1 worker, local "
            "state) unless the row says otherwise, with the full pipeline on (auth, rate "
            "limit, deadline, bulkhead, retry with budget, breaker, attempt timeout), the "
            "RED histogram with exemplars and the JSON access log on every request; tracing "
            "on = every request sampled (the stack's ratio 1.0: a server and a client span) and "
            "exported to a real Jaeger.",
            "CPU us/req: user + system CPU of the proxy's processes (gunicorn master and "
            "workers, from /proc) over the measured runs, divided by the requests they served; "
            "unlike req/s it barely moves when other work shares the machine.",
            f"Targets: tracing on >= 0.5 x nginx: measured {ratio:.2f}, "
            f"{'met' if ratio >= 0.5 else 'NOT met'}; <= 1 ms added at p50 at half the "
            f"gateway's max rate: measured {added:+.2f} ms, "
            f"{'met' if added <= 1.0 else 'NOT met'}.",
            *cpu_notes,
            "Sampling ratio rows: the same gateway with [telemetry] sampling_ratio "
            "(SERVOSCOPE_TELEMETRY_SAMPLING_RATIO) at 1 (the local stack's), 0.1 and 0.01 "
            "(parent-based: a request with no sampled parent is traced with that probability), "
            f"what production runs. CPU per request above the untraced gateway's: {costs}. "
            "An unsampled request still costs more than tracing off: its ids are generated and "
            "the sampler consulted for both spans, which are non-recording, its traceparent "
            "goes upstream and X-Trace-Id back; nothing is encoded or exported.",
            "Paced rows: wrk with a Lua delay() per request over "
            f"{PACED_CONNECTIONS} connections (wrk2 is not packaged), so the rate is approximate "
            "and closed-loop per connection.",
            *NOTES,
        ],
    )


# What was tried on the way to the figures above (see docs/gateway.md). Figures in
# these notes come from side-by-side runs in one process tree (interleaved, 3-5 runs,
# median); the machine was shared with other work, so req/s moved by +-20 % run to run.
NOTES: list[str] = [
    "Where the time goes (py-spy on the worker under wrk; cProfile and process_time in "
    "process; CPU from /proc). With gthread x 16 threads the worker spent ~1,300 us CPU per "
    "request, of which the app itself ~530 us: the rest was 16 threads handing the GIL "
    "around every socket call and gthread's poller handing each keep-alive connection to "
    "its pool and back (py-spy: most thread time waiting for the GIL). On gevent, ~680-920 "
    "us per request with tracing on: the upstream exchange ~22 % (send/recv syscalls, "
    "http.client's header parsing), the two SDK spans ~11 % (each takes gevent's "
    "pure-Python threading.Lock), OTLP protobuf encoding ~11 % (~30 us per span), "
    "gunicorn's parsing and writing ~15 %, the JSON access log ~8 %, the pipeline's stages, "
    "metrics and werkzeug's request object the rest, each a few %.",
    "Kept, worker model: gunicorn's gevent worker instead of gthread x 16: tracing on, "
    "1,263 vs 690 req/s and 761 vs 1,317 us CPU per request (5 interleaved runs); an "
    "earlier 3-run comparison 1,246 vs 872 req/s.",
    "Kept, HTTP client: http.client connections in a deque instead of urllib3's pool. One "
    "GET to the upstream, CPU per call: urllib3 159 us (214 under gevent), http.client 95 "
    "(136 under gevent), geventhttpclient 132 under gevent (no better, and it would tie the "
    "seam to gevent). In the gateway ~1,250 -> ~1,370 req/s. The check that an idle "
    "connection is still open polls the kernel directly: gevent's poll yielded to its loop "
    "(~0.2 ms wall per request in cProfile).",
    "Kept, hot path: the server span started and attached without start_as_current_span's "
    "context-manager layers and its trace id formatted once; a plain WSGI Answer instead of "
    "a werkzeug Response; log records that skip caller, thread and process lookups "
    "(logging HOWTO's optimisation flags; the JSON lines never showed them): worker CPU "
    "~790 -> ~750 us per request. From before: fixed-path operations beside Flask's "
    "dispatch (gateway/dispatch.py), a local token bucket instead of limits' memory "
    "storage, tenacity only after a failed first attempt, fewer Redis round trips.",
    "Not adopted: gevent's pywsgi server (-k gevent_wsgi), 717 vs 761 us per request and "
    "1,360 vs 1,263 req/s (5 runs, within the noise), because it writes its own errors "
    "(e.g. a malformed request) as plain text to stderr, breaking one JSON object per log "
    "line; an upstream pool of 64 instead of 16 connections (1,261 vs 1,311 req/s; the pool "
    "is now sized by the upstream's bulkhead, which bounds its calls in flight); "
    "2 gevent workers, which must share breakers, buckets and budgets in Redis (row above): "
    "~5 Redis round trips per request (rate limit 2, budget 1, breaker 2) cost more CPU "
    "than the second core gives on a machine that wrk, the upstream and Jaeger already "
    "fill (813 vs 1,037 req/s for 1 worker in one run; 2 workers on local state, not "
    "allowed, 1,080).",
    "CPU against the bare proxy (issue 14): before this round, in one bench run, 843 vs "
    "452 us per request untraced (1.86x) and 1,192 vs 788 traced (1.51x). py-spy under wrk "
    "puts 30-40 % of both workers' samples in send() to the upstream (loopback delivery "
    "runs in the sender's system time), the same for both. In process, the whole "
    "resilience pipeline (every stage disabled in routes.yaml vs all on) is ~100 us of a "
    "~300-400 us gap; the rest is the frame around it, each part a few %: the inbound "
    "layer (request id, span, histogram, the JSON access log ~21 us), werkzeug's request "
    "object and the outbound header rules (~10 us), two header checks, and the extra "
    "header fields sent and returned. Kept: the bulkhead as acquire/release methods "
    "instead of three nested context managers (~4 % of worker samples, that stage ~40 % "
    "cheaper in cProfile). Not kept: caching the histograms' labelled children (1.3 us per "
    "observation).",
    "CPU against the bare proxy, second round (issue 14). Measured by starting gateways "
    "from main's tree and from the changed one side by side with the bare proxy, wrk "
    "runs alternating between them (5 rounds each, load average 4-7 from other work): "
    "after the first step untraced 760 -> 665 us per request (2.01x -> 1.79x the bare "
    "proxy's 382), traced 1,097 -> 986 (1.72x -> 1.47x); with the rest, untraced 783 -> "
    "636 (1.99x -> 1.71x, 376 for the bare proxy) and 984 -> 1,147 req/s. What changed, "
    "all on the proxied path, no behaviour dropped: the pipeline reads the request "
    "through gateway/proxy.py's ProxiedRequest (werkzeug's rules for length, host and "
    "input stream, no werkzeug Request and header views per request) and builds the "
    "upstream's header fields from the environ; the sendability check runs once (the "
    "client skips its own when the pipeline ran it); the access line is written straight "
    "to the log handler's stream when nothing else would see the record (logging's "
    "record, handler and formatter layers skipped, the same JSON object); the "
    "propagators run only when the request carries a field they read; the exemplar and "
    "the log line's ids come from the span at hand; request ids from os.urandom. In "
    "process (the app called in a loop, a scripted upstream) the gateway's own work fell "
    "from ~145 to ~105 us per request.",
    "In the same kind of side-by-side runs, on the changed gateway: every pipeline stage "
    "switched off in routes.yaml 627 us vs 636 with all on; no access line 609; the "
    "bulkhead on gevent's own semaphore (whose release does not yield to the hub) 669, "
    "no gain. So what is left of the gap is the frame around the stages, not the stages.",
    "Why the layers cost more than their parts: in process, the gateway's app with the "
    "real upstream cost ~500-550 us while the same app with a scripted upstream (~145) "
    "and the client alone (~200) summed to ~350: every function on the path ran slower "
    "(sha256 2.7x, gmtime 1.7x under cProfile) once the upstream's process ran between "
    "the request's halves and evicted the caches (perf: 76 % of the CPU in the "
    "interpreter, no one hot spot; GC under 3 us). So the cost grows with the code a "
    "request touches, and removing a layer pays more than its cost in isolation.",
    "What stands in the way of 1.5x / 1.3x: no layer left is large. Untraced, the gateway "
    "needs ~75 us less per request: the whole pipeline is ~10-30 us of it in the wrk runs "
    "(above), the access line ~25 us, and the rest is spread over the frame: the inbound "
    "layer (request id, histogram, span start even when it records nothing), "
    "authentication (a SHA-256 per request), the request check and header rules, and the "
    "fields the gateway adds (five sent up, three or four returned), each validated, "
    "parsed and written in Python by http.client and gunicorn, ~2 us each alone and more "
    "with cold caches. Traced, the gateway's two spans carry 13 attributes more than the "
    "bare proxy's, each validated by the SDK and encoded to OTLP in the worker (~3 us "
    "each: a server span of 9 attributes costs ~70 us created, ended and encoded, the "
    "bare proxy's of 1 ~36 us), so 1.3x would need attributes dropped or the encoding "
    "moved out of the worker (a collector beside it).",
    "What tracing costs, in process (the gateway's WSGI app called in a loop under "
    "gevent's patching, min of 4 rounds of 3,000 requests): tracing off ~310 us CPU per "
    "request; the two spans created, ended and batched but not exported ~420 us; plus "
    "their OTLP protobuf encoding ~535 us; plus the POST to Jaeger ~535 us. The SDK's "
    "encoding (~60 us per span of ~10 attributes) is the largest single cost on the hot "
    "path; the exporter runs in the worker, so it competes with requests for the core.",
    "Why the targets are out of reach here: at 0.5 x nginx the gateway would have to "
    "spend at most ~0.35-0.4 ms CPU per request (the upstream, wrk and Jaeger use the rest "
    "of the 2 cores), about what the reference proxy (same client and tracing, nothing "
    "else) takes. Exploratory floors under gunicorn's gevent worker: a WSGI function "
    "answering directly ~12,300 req/s; a bare http.client proxy ~3,200-3,600 (~0.6 x); "
    "plus two minimal spans exported ~2,300-2,500 (~0.45 x); the same with 2 workers "
    "~2,800-2,900.",
    "Latency: one connection, back to back, p50 direct 0.34 ms vs gateway 1.06 ms (+0.72); "
    "with 20 ms idle between requests 0.89 vs 2.50 ms. On this virtual machine a process "
    "woken from idle runs slowly for a while, and a proxied request wakes two processes "
    "more than a direct one, so the paced comparison adds well over the gateway's CPU "
    "time per request.",
]


if __name__ == "__main__":
    print(run(BenchContext(Path(os.environ.get("TMPDIR", "/tmp")), repeats=1)).markdown())
