"""python -m deploy.cluster up|down|status|install|uninstall|forward (make k8s-up, k8s-down...)."""

from __future__ import annotations

import sys
from collections.abc import Callable

from deploy.cluster import lifecycle, release

# Each command returns nothing (it succeeded) or raises ClusterError; status has its own code.
COMMANDS: dict[str, Callable[[], object]] = {
    "up": lifecycle.up,
    "down": lifecycle.down,
    "install": release.install,
    "uninstall": release.uninstall,
    "forward": release.serve_forwards,
}


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    try:
        if command == "status":
            return lifecycle.status()
        if command in COMMANDS:
            COMMANDS[command]()
            return 0
    except lifecycle.ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"usage: python -m deploy.cluster {'|'.join(['status', *COMMANDS])}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
