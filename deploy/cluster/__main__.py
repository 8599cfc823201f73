"""python -m deploy.cluster up|down|status|install|uninstall|forward (make k8s-up, k8s-down...)."""

from __future__ import annotations

import sys

from deploy.cluster import lifecycle, release

USAGE = "usage: python -m deploy.cluster up|down|status|install|uninstall|forward"


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    try:
        if command == "up":
            lifecycle.up()
            return 0
        if command == "down":
            lifecycle.down()
            return 0
        if command == "status":
            return lifecycle.status()
        if command == "install":
            release.install()
            return 0
        if command == "uninstall":
            release.uninstall()
            return 0
        if command == "forward":
            release.serve_forwards()
            return 0
    except lifecycle.ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
