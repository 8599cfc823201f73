"""``python -m stack up | down | status``: the local stack's command line.

``up`` starts a detached supervisor and returns once the gateway is ready
(``--foreground`` keeps it attached; Ctrl-C stops everything). ``down`` stops the
supervisor, which stops its children; anything left is killed by its recorded pid.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from servoscope.settings import REPO_ROOT, load
from stack import supervisor

SUPERVISOR_PID = "supervisor.pid"
READY_LINE = "==> stack ready"
FAILED_LINE = "==> stack failed"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def up(run_dir: Path, foreground: bool, restart: bool) -> int:
    pid = read_pid(run_dir / SUPERVISOR_PID)
    if pid and pid_alive(pid):
        supervisor.say(f"the stack in {run_dir} is already running (supervisor pid {pid})")
        return 0
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "logs").mkdir(exist_ok=True)
    if foreground:
        (run_dir / SUPERVISOR_PID).write_text(f"{os.getpid()}\n")
        try:
            return supervisor.run(load(), run_dir, restart=restart)
        finally:
            (run_dir / SUPERVISOR_PID).unlink(missing_ok=True)

    log_path = run_dir / "logs" / "supervisor.log"
    log_path.write_text("")
    argv = [sys.executable, "-m", "stack", "up", "--foreground", "--run-dir", str(run_dir)]
    if not restart:
        argv.append("--no-restart")
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    # Echo the supervisor's progress until the stack is ready or has failed.
    offset = 0
    while True:
        text = log_path.read_text()
        new, offset = text[offset:], len(text)
        if new:
            print(new, end="", flush=True)
        if READY_LINE in text:
            return 0
        if process.poll() is not None:
            print(log_path.read_text()[offset:], end="")
            supervisor.say(f"supervisor exited ({process.returncode}); logs in {run_dir / 'logs'}")
            return 1
        time.sleep(0.1)


def down(run_dir: Path) -> int:
    pid = read_pid(run_dir / SUPERVISOR_PID)
    if pid and pid_alive(pid):
        supervisor.say(f"stopping the stack (supervisor pid {pid})")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid):
            supervisor.say(f"supervisor {pid} did not stop; killing it")
            os.kill(pid, signal.SIGKILL)
    # Children recorded by a supervisor that was itself killed: stop them by their pid.
    for pid_file in sorted((run_dir / "pids").glob("*.pid")):
        child = read_pid(pid_file)
        if child and pid_alive(child):
            supervisor.say(f"stopping leftover {pid_file.stem} (pid {child})")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)
    (run_dir / SUPERVISOR_PID).unlink(missing_ok=True)
    supervisor.say("stack is down")
    return 0


def status(run_dir: Path) -> int:
    pid = read_pid(run_dir / SUPERVISOR_PID)
    alive = bool(pid and pid_alive(pid))
    print(f"supervisor: {'running, pid ' + str(pid) if alive else 'not running'}")
    for pid_file in sorted((run_dir / "pids").glob("*.pid")):
        child = read_pid(pid_file)
        state = "running" if child and pid_alive(child) else "not running"
        print(f"{pid_file.stem}: {state} (pid {child})")
    return 0 if alive else 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--run-dir", type=Path, help="default: [stack] run_dir of the settings")
    parser.add_argument("--foreground", action="store_true", help="stay attached; Ctrl-C stops")
    parser.add_argument("--no-restart", action="store_true", help="don't restart dead processes")
    args = parser.parse_args(argv)
    run_dir = (args.run_dir or load().path("stack", "run_dir")).resolve()
    if args.command == "up":
        return up(run_dir, args.foreground, not args.no_restart)
    if args.command == "down":
        return down(run_dir)
    return status(run_dir)


if __name__ == "__main__":
    sys.exit(main())
