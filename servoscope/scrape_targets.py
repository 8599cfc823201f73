"""Where Prometheus finds each gunicorn worker's metrics: one file_sd target per worker.

Every worker keeps its own in-process registry, so exemplars survive (prometheus_client's
multiprocess mode writes samples to mmap files and drops exemplars on the way). A scrape of
the service port would reach whichever worker accepted the connection, so with several
workers Prometheus scrapes each worker on its own port instead:

- the gunicorn master gives each worker a *slot*, the lowest number no live worker holds, so
  a replaced worker inherits its predecessor's slot and its series (a counter reset, which
  ``rate()`` handles, never a lost or duplicated series);
- with one worker the target is the service port itself: no extra thread, no extra port;
- with several, each worker serves its registry on a free loopback port of its own
  (OpenMetrics, exemplars kept) and writes ``<service>-<slot>.json`` into the directory
  named by ``SERVOSCOPE_SCRAPE_DIR``, which Prometheus watches with ``file_sd_configs``.

The target's labels carry ``job`` (the service) and a stable ``instance``
(``<service address>/worker-<slot>``), so queries read the same for any worker count::

    sum by (http_route) (rate(http_server_request_duration_seconds_count{job="gateway"}[1m]))
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import start_http_server

SCRAPE_DIR_ENV = "SERVOSCOPE_SCRAPE_DIR"

log = logging.getLogger("servoscope.scrape_targets")


def free_slot(taken: Iterable[int | None]) -> int:
    """The lowest slot number not in ``taken``."""
    used = set(taken)
    slot = 0
    while slot in used:
        slot += 1
    return slot


def target_file(scrape_dir: Path, service: str, slot: int) -> Path:
    return scrape_dir / f"{service}-{slot}.json"


def write_target(
    scrape_dir: Path, service: str, slot: int, address: str, instance: str | None = None
) -> Path:
    """Atomically publish one worker's scrape address (Prometheus never reads half a file)."""
    labels = {"job": service, "service": service, "worker": str(slot)}
    if instance:
        labels["instance"] = instance
    scrape_dir.mkdir(parents=True, exist_ok=True)
    path = target_file(scrape_dir, service, slot)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps([{"targets": [address], "labels": labels}]))
    partial.replace(path)
    return path


def forget_service(service: str) -> None:
    """Drop a service's targets when its master (re)starts, e.g. with fewer workers."""
    scrape_dir = os.environ.get(SCRAPE_DIR_ENV)
    if scrape_dir:
        for path in Path(scrape_dir).glob(f"{service}-*.json"):
            path.unlink(missing_ok=True)


def forget_worker(service: str, slot: int) -> None:
    """Drop one worker's target when its slot will not be refilled (fewer workers)."""
    scrape_dir = os.environ.get(SCRAPE_DIR_ENV)
    if scrape_dir:
        target_file(Path(scrape_dir), service, slot).unlink(missing_ok=True)


def publish_worker(service: str, slot: int, workers: int, bind: str) -> str:
    """Make this worker scrapeable; returns the address Prometheus will scrape.

    Called in the worker right after fork, before the app is loaded.
    """
    host, _, port = bind.rpartition(":")
    # A wildcard bind (0.0.0.0 in a container) is scraped over loopback.
    local = "127.0.0.1" if host in ("", "0.0.0.0", "[::]") else host
    if workers <= 1:
        address, instance = f"{local}:{port}", None
    else:
        server, _thread = start_http_server(0, addr=local)
        address, instance = f"{local}:{server.server_port}", f"{local}:{port}/worker-{slot}"
    scrape_dir = os.environ.get(SCRAPE_DIR_ENV)
    if scrape_dir:
        write_target(Path(scrape_dir), service, slot, address, instance)
    elif workers > 1:
        log.warning(
            "worker %d serves its metrics on %s; set %s so Prometheus can find it",
            slot,
            address,
            SCRAPE_DIR_ENV,
        )
    return address
