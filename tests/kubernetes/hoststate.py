"""What the host's own network and kernel configuration looks like, to compare before and after.

A snapshot holds the host namespace's links, addresses, routes (every table), policy rules,
network namespaces, nftables and iptables rules, the kernel settings under /proc/sys/net, vm
and kernel, and the mount points: everything ``make k8s-up`` could change on the host if the
cluster were not sealed in its own namespace.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from pathlib import Path

# Counters and random values the kernel changes by itself, not configuration.
VOLATILE_SYSCTLS = re.compile(
    r"^(kernel/random/|kernel/ns_last_pid|kernel/pty/nr|kernel/tainted|fs/|"
    r"net/netfilter/nf_conntrack_count|kernel/sched_domain/|vm/stat_refresh|vm/drop_caches|"
    r"vm/compact_memory|net/ipv4/route/flush|net/ipv6/route/flush|net/ipv6/conf/.*/stable_secret)"
)
# Rootful podman (make images, the compose test) adds and removes these on its own schedule;
# they are another tool's, on a bridge of its own, never the cluster's.
PODMAN = re.compile(r"podman|netavark|\bveth\d|10\.88\.")


def _run(*argv: str) -> str:
    if shutil.which(argv[0]) is None:
        return f"({argv[0]} not installed)"
    result = subprocess.run(argv, capture_output=True, text=True)
    return result.stdout + (
        f"(exit {result.returncode}: {result.stderr.strip()})" if result.returncode else ""
    )


def _without_podman(text: str) -> list[str]:
    return [line for line in text.splitlines() if not PODMAN.search(line)]


def _counters_stripped(text: str) -> str:
    # iptables-save's header comments carry a time; counters change with traffic.
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    return "\n".join(re.sub(r"\[\d+:\d+\]", "[]", ln) for ln in lines)


def _sysctls() -> dict[str, str]:
    values: dict[str, str] = {}
    root = Path("/proc/sys")
    for section in ("net", "vm", "kernel"):
        for path in (root / section).rglob("*"):
            name = str(path.relative_to(root))
            if VOLATILE_SYSCTLS.match(name) or not path.is_file():
                continue
            with contextlib.suppress(OSError):
                values[name] = path.read_text().strip()
    return {k: v for k, v in values.items() if not PODMAN.search(k)}


def _mounts() -> list[str]:
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return sorted(p for p in points if not PODMAN.search(p) and "/containers/storage/" not in p)


def snapshot() -> dict[str, object]:
    return {
        "links": _without_podman(_run("ip", "-o", "link", "show")),
        "addresses": _without_podman(_run("ip", "-o", "address", "show")),
        "routes4": _without_podman(_run("ip", "-4", "route", "show", "table", "all")),
        "routes6": _without_podman(_run("ip", "-6", "route", "show", "table", "all")),
        "rules": _run("ip", "rule", "show") + _run("ip", "-6", "rule", "show"),
        "netns": _run("ip", "netns", "list"),
        "nft": _without_podman(_run("nft", "--stateless", "list", "ruleset")),
        "iptables": _without_podman(_counters_stripped(_run("iptables-save"))),
        "ip6tables": _without_podman(_counters_stripped(_run("ip6tables-save"))),
        "sysctls": _sysctls(),
        "mounts": _mounts(),
    }


def differences(before: dict[str, object], after: dict[str, object]) -> list[str]:
    """Human-readable lines naming what changed between two snapshots."""
    changed: list[str] = []
    for key, old in before.items():
        new = after[key]
        if isinstance(old, dict) and isinstance(new, dict):
            for name in sorted(set(old) | set(new)):
                if old.get(name) != new.get(name):
                    changed.append(f"{key}: {name}: {old.get(name)!r} -> {new.get(name)!r}")
        elif old != new:
            old_set, new_set = set(old), set(new)  # type: ignore[call-overload]
            changed += [f"{key}: gone: {line}" for line in sorted(old_set - new_set)]
            changed += [f"{key}: new: {line}" for line in sorted(new_set - old_set)]
            if old_set == new_set:
                changed.append(f"{key}: same lines, other order")
    return changed
