"""``python -m services.servo.simulator``: the command line (see the package's docstring)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from services.servo.simulator.maestro import Simulator, SimulatorConfig


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.servo.simulator",
        description="A Pololu Maestro servo controller simulated on a pseudo-terminal "
        "(and, with --rfc2217-port, served over the network).",
    )
    add = parser.add_argument
    add("--channels", type=int, default=12, help="number of channels, 6..24 (default 12)")
    add("--baud", type=int, default=115200, help="pace replies as this baud rate; 0 = no pacing")
    add("--device-number", type=int, default=12, help="Pololu-form device number (default 12)")
    add("--crc", action="store_true", help="require a CRC-7 byte after every command")
    add("--speed", type=int, default=0, help="start-up speed of every channel (0 = unlimited)")
    add("--acceleration", type=int, default=0, help="start-up acceleration, 0..255 (0 = none)")
    add("--home-us", type=float, default=1500.0, help="home and start position in us; 0 = off")
    add("--min-us", type=float, default=992.0, help="targets below this clamp to it (us)")
    add("--max-us", type=float, default=2000.0, help="targets above this clamp to it (us)")
    add("--link", help="keep a symlink at this path pointing to the current pty")
    add("--control-port", type=int, default=0, help="HTTP control port; 0 = off (default)")
    add("--control-host", default="127.0.0.1", help="HTTP control address (default 127.0.0.1)")
    add("--seed", type=int, help="random seed for the garble fault")
    add("--rfc2217-port", type=int, help="also serve the device over RFC 2217 on this TCP port")
    add("--rfc2217-host", default="127.0.0.1", help="RFC 2217 address (default 127.0.0.1)")
    add("--log-level", default="WARNING", help="stderr log level (default WARNING)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator until SIGTERM or SIGINT; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    try:
        config = SimulatorConfig(
            channels=args.channels,
            baud=args.baud,
            device_number=args.device_number,
            crc=args.crc,
            speed=args.speed,
            acceleration=args.acceleration,
            home_us=args.home_us,
            min_us=args.min_us,
            max_us=args.max_us,
            link=args.link,
            control_port=args.control_port or None,
            control_host=args.control_host,
            seed=args.seed,
            rfc2217_port=args.rfc2217_port,
            rfc2217_host=args.rfc2217_host,
        )
    except ValueError as exc:
        parser.error(str(exc))

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    simulator = Simulator(config)
    try:
        simulator.start()
    except (OSError, ValueError) as exc:
        print(f"cannot start the simulator: {exc}", file=sys.stderr)
        return 1
    # The control API logs JSON lines like every service; the level stays the one asked for.
    logging.getLogger().setLevel(args.log_level.upper())
    try:
        print(f"device: {simulator.device_path}", flush=True)
        if simulator.control_url:
            print(f"control: {simulator.control_url}", flush=True)
        if config.link:
            print(f"link: {config.link}", flush=True)
        if simulator.rfc2217_url:
            print(f"rfc2217: {simulator.rfc2217_url}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        simulator.stop()
    return 0
