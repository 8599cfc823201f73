"""The single-node Kubernetes of ``make k8s-up``: how long a cold start and a stop take, what
the node's own processes hold in memory once idle (CoreDNS against its request and limit), how
long ``make k8s-install`` takes, and what each of the release's pods holds against its memory
request and limit.

Each repeat is a whole cycle on a machine with nothing of the cluster left from before:
``make k8s-up`` (namespace, certificates, every daemon waited for, CoreDNS answering) then
``make k8s-down``; the first cycle also installs the chart (images imported into the fresh
containerd, ``helm install --wait``) and measures its pods idle. Needs root, like the cluster.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from bench.bench_footprint import memory_kib, tree
from bench.report import BenchContext, Section, median
from deploy.cluster import layout, lifecycle, release
from servoscope.settings import REPO_ROOT


def _make(target: str) -> float:
    started = time.monotonic()
    subprocess.run(["make", "--no-print-directory", target], cwd=REPO_ROOT, check=True,
                   capture_output=True)  # fmt: skip
    return time.monotonic() - started


def _rss_mib(pids: list[int]) -> float:
    return sum(memory_kib(pid)[0] for pid in pids) / 1024


def _pods_rss(namespace: str, selector: str) -> list[tuple[str, float, str, str]]:
    """Each pod's RSS (every process in its cgroup), with its first container's memory
    request and limit: (component, MiB, request, limit)."""
    listed = ("-n", namespace, "get", "pods", "-l", selector, "-o", "json")
    found = []
    # The kubelet's cgroupfs driver names a pod's cgroup pod<uid>, under its QoS class.
    memory = Path("/sys/fs/cgroup/memory", layout.CGROUP_ROOT.strip("/"))
    every = list(memory.rglob("cgroup.procs"))
    for pod in json.loads(lifecycle.kubectl(*listed).stdout)["items"]:
        resources = pod["spec"]["containers"][0]["resources"]
        pids = set()
        for procs in every:
            if f"pod{pod['metadata']['uid']}" in str(procs):
                pids.update(int(p) for p in procs.read_text().split())
        labels = pod["metadata"]["labels"]
        name = labels.get("app.kubernetes.io/component") or labels.get("k8s-app", "?")
        found.append(
            (name, _rss_mib(sorted(pids)), resources["requests"]["memory"],
             resources["limits"]["memory"])
        )  # fmt: skip
    return sorted(found)


def run(ctx: BenchContext) -> Section:
    if lifecycle.running():
        raise RuntimeError("a cluster is running: make k8s-down first")
    ups, downs, daemons, install_s = [], [], {}, 0.0
    coredns: list[tuple[str, float, str, str]] = []
    pods: list[tuple[str, float, str, str]] = []
    for repeat in range(ctx.repeats):
        ups.append(_make("k8s-up"))
        ctx.say(f"cold start {repeat + 1}: {ups[-1]:.1f} s")
        if repeat == 0:
            time.sleep(20)  # idle, as the footprint benchmark measures
            for daemon in lifecycle.daemons():
                pid = int(daemon.pid_file.read_text())
                daemons[daemon.name] = _rss_mib(tree(pid))
            coredns = _pods_rss("kube-system", "k8s-app=kube-dns")
            install_s = _make("k8s-install")
            ctx.say(f"make k8s-install: {install_s:.1f} s")
            time.sleep(20)
            pods = _pods_rss(release.NAMESPACE, f"app.kubernetes.io/instance={release.RELEASE}")
        downs.append(_make("k8s-down"))
    rows: list[list[object]] = [
        ["`make k8s-up` (cold start, until node Ready and DNS answers): s", f"{median(ups):.1f}"],
        ["`make k8s-down` (every process stopped, host restored): s", f"{median(downs):.1f}"],
    ]
    rows += [[f"{name}: RSS MiB", f"{rss:.0f}"] for name, rss in daemons.items()]
    rows += [
        [f"CoreDNS pod: RSS MiB (request {request}, limit {limit})", f"{rss:.0f}"]
        for _, rss, request, limit in coredns
    ]
    node = sum(daemons.values()) + sum(rss for _, rss, _, _ in coredns)
    rows.append(["**node total**: RSS MiB", f"**{node:.0f}**"])
    rows.append(
        [
            "`make k8s-install` (images into containerd, `helm install --wait`): s",
            f"{install_s:.1f}",
        ]
    )
    rows += [
        [f"{name} pod: RSS MiB (request {request}, limit {limit})", f"{rss:.0f}"]
        for name, rss, request, limit in pods
    ]
    rows.append(["**release total**: RSS MiB", f"**{sum(rss for _, rss, _, _ in pods):.0f}**"])
    return Section(
        "Kubernetes: the single-node cluster of make k8s-up",
        ["what", "figure"],
        rows,
        notes=[
            f"Median of {ctx.repeats} cold start / stop cycles; memory after 20 s idle in the "
            "first cycle, summed over each daemon's process tree (containerd with its shims).",
            "The cluster runs in its own network namespace; the figures include creating it, "
            "the certificates and the configuration, and (k8s-down) removing all of it.",
            "`make k8s-install` once, in the first cycle, on a fresh containerd: it imports every "
            "image of the chart from podman, then `helm install --wait` with the offline and "
            "simulator values; each pod's RSS 20 s after, idle, summed over its cgroup.",
            "First build from empty caches, not re-measured by `make bench` (it takes most of an "
            "hour): a fresh clone's whole `bash .ci/run` with an empty HOME (servoscope, Go and "
            "pip caches) and an empty podman store, 2026-11-30: 41 min 57 s on a quiet machine, "
            "of which installing and building 17 min 51 s (Jaeger 3 min 15 s, base and images 1.5 "
            "min, kube-apiserver + kubectl 4 min 15 s, the node's four kubernetes commands 2 min, "
            "containerd 1.5 min, CoreDNS 1 min) and the tests 24 min 3 s; 60 min 44 s with other "
            "work keeping the load average near 5; docs/kubernetes.md lists every step.",
        ],
    )
