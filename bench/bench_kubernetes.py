"""The single-node Kubernetes of ``make k8s-up``: how long a cold start and a stop take, and
what the node's own processes hold in memory once idle (CoreDNS against its request and limit).

Each repeat is a whole cycle on a machine with nothing of the cluster left from before:
``make k8s-up`` (namespace, certificates, every daemon waited for, CoreDNS answering) then
``make k8s-down``. Needs root, like the cluster.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from bench.bench_footprint import memory_kib, tree
from bench.report import BenchContext, Section, median
from deploy.cluster import layout, lifecycle
from servoscope.settings import REPO_ROOT


def _make(target: str) -> float:
    started = time.monotonic()
    subprocess.run(["make", "--no-print-directory", target], cwd=REPO_ROOT, check=True,
                   capture_output=True)  # fmt: skip
    return time.monotonic() - started


def _rss_mib(pids: list[int]) -> float:
    return sum(memory_kib(pid)[0] for pid in pids) / 1024


def _coredns() -> tuple[float, str, str]:
    """CoreDNS's RSS (every process in its pod's cgroup), its memory request and limit."""
    selector = ("-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns", "-o", "json")
    pod = json.loads(lifecycle.kubectl(*selector).stdout)["items"][0]
    resources = pod["spec"]["containers"][0]["resources"]
    # The kubelet's cgroupfs driver names a pod's cgroup pod<uid>, under its QoS class.
    memory = Path("/sys/fs/cgroup/memory", layout.CGROUP_ROOT.strip("/"))
    pids = set()
    for procs in memory.rglob("cgroup.procs"):
        if f"pod{pod['metadata']['uid']}" in str(procs):
            pids.update(int(p) for p in procs.read_text().split())
    return _rss_mib(sorted(pids)), resources["requests"]["memory"], resources["limits"]["memory"]


def run(ctx: BenchContext) -> Section:
    if lifecycle.running():
        raise RuntimeError("a cluster is running: make k8s-down first")
    ups, downs, daemons, coredns = [], [], {}, (0.0, "", "")
    for repeat in range(ctx.repeats):
        ups.append(_make("k8s-up"))
        ctx.say(f"cold start {repeat + 1}: {ups[-1]:.1f} s")
        if repeat == 0:
            time.sleep(20)  # idle, as the footprint benchmark measures
            for daemon in lifecycle.daemons():
                pid = int(daemon.pid_file.read_text())
                daemons[daemon.name] = _rss_mib(tree(pid))
            coredns = _coredns()
        downs.append(_make("k8s-down"))
    rows: list[list[object]] = [
        ["`make k8s-up` (cold start, until node Ready and DNS answers): s", f"{median(ups):.1f}"],
        ["`make k8s-down` (every process stopped, host restored): s", f"{median(downs):.1f}"],
    ]
    rows += [[f"{name}: RSS MiB", f"{rss:.0f}"] for name, rss in daemons.items()]
    rss, request, limit = coredns
    rows.append([f"CoreDNS pod: RSS MiB (request {request}, limit {limit})", f"{rss:.0f}"])
    rows.append(["**node total**: RSS MiB", f"**{sum(daemons.values()) + rss:.0f}**"])
    return Section(
        "Kubernetes: the single-node cluster of make k8s-up",
        ["what", "figure"],
        rows,
        notes=[
            f"Median of {ctx.repeats} cold start / stop cycles; memory after 20 s idle in the "
            "first cycle, summed over each daemon's process tree (containerd with its shims).",
            "The cluster runs in its own network namespace; the figures include creating it, "
            "the certificates and the configuration, and (k8s-down) removing all of it.",
        ],
    )
