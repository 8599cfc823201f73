"""python -m deploy.cluster up|down|status (make k8s-up, make k8s-down)."""

from __future__ import annotations

import sys

from deploy.cluster import lifecycle


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
    except lifecycle.ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("usage: python -m deploy.cluster up|down|status", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
