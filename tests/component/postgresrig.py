"""A real PostgreSQL server on a free port for a test, started as the stack starts its own."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from servoscope.settings import load
from stack import postgres
from stack.ephemeral import free_ports, wait_for
from tests.component.gatewayrig import _redis_up as port_open


@contextmanager
def postgres_server(run_dir: Path) -> Iterator[str]:
    """Yields the DSN of a fresh cluster; stops the server and removes the cluster after."""
    (port,) = free_ports(1)
    settings = load({"SERVOSCOPE_PORTS_POSTGRES": str(port)})
    run_dir.mkdir(parents=True, exist_ok=True)
    postgres.prepare(run_dir)
    log = (run_dir / "postgres.log").open("wb")
    process = subprocess.Popen(
        postgres.argv(settings, run_dir), stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for(lambda: port_open(port) or process.poll() is not None, 30, message="postgres")
        assert process.poll() is None, (run_dir / "postgres.log").read_text()
        yield f"postgresql://{postgres.ROLE}@127.0.0.1:{port}/{postgres.ROLE}"
    finally:
        process.terminate()
        process.wait(30)
        log.close()
        postgres.remove(run_dir)
