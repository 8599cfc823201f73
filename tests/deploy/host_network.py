"""The host's network configuration, as a value two moments can be compared by.

Addresses, routes (every table), nftables and iptables rules without their counters,
and the forwarding sysctls: what a test that runs containers must leave as it found.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

COUNTERS = re.compile(r"\[\d+:\d+\]|counter packets \d+ bytes \d+")


def _run(*argv: str) -> str:
    if shutil.which(argv[0]) is None:
        return f"{argv[0]}: not installed"
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    return COUNTERS.sub("", result.stdout + result.stderr)


def _addresses() -> list[tuple[str, list[str]]]:
    links = json.loads(_run("ip", "-j", "addr", "show") or "[]")
    return sorted(
        (link["ifname"], sorted(f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"]))
        for link in links
    )


def snapshot() -> dict[str, object]:
    return {
        "addresses": _addresses(),
        "routes4": _run("ip", "-4", "route", "show", "table", "all"),
        "routes6": _run("ip", "-6", "route", "show", "table", "all"),
        "nftables": _run("nft", "list", "ruleset"),
        "iptables": [
            line for line in _run("iptables-save").splitlines() if not line.startswith("#")
        ],
        "ip6tables": [
            line for line in _run("ip6tables-save").splitlines() if not line.startswith("#")
        ],
        "forwarding": [
            Path(p).read_text().strip()
            for p in ("/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding")
        ],
    }
