"""The gunicorn configuration every process of the stack runs with.

Bind address, workers and threads come from the environment the stack sets
(``SERVOSCOPE_BIND``, ``SERVOSCOPE_WORKERS``, ``SERVOSCOPE_THREADS``); the worker
class from ``worker_class`` in the settings section named after the service (only
the gateway has one: it runs gevent), else gthread. The app is loaded in each worker
after fork (no preload) so tracing threads live there.
Each worker gets a slot and publishes where Prometheus scrapes it
(:mod:`servoscope.scrape_targets`), so metrics stay exact, with exemplars, for
any number of workers.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gunicorn.arbiter import Arbiter
    from gunicorn.workers.base import Worker

bind = os.environ.get("SERVOSCOPE_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("SERVOSCOPE_WORKERS", "1"))
threads = int(os.environ.get("SERVOSCOPE_THREADS", "8"))


def _worker_class(service: str) -> str:
    from servoscope.settings import load

    return str(load().sections.get(service, {}).get("worker_class", "gthread"))


proc_name = os.environ.get("SERVOSCOPE_SERVICE", "servoscope")
worker_class = _worker_class(proc_name)
keepalive = 30
graceful_timeout = 5
timeout = 30
accesslog = None  # servoscope.inbound writes one JSON line per request instead
errorlog = "-"
loglevel = "warning"


def on_starting(server: Arbiter) -> None:
    from servoscope.scrape_targets import forget_service

    forget_service(proc_name)


def pre_fork(server: Arbiter, worker: Worker) -> None:
    from servoscope.scrape_targets import free_slot

    # Runs in the master, which alone knows which slots its live workers hold.
    taken = (getattr(w, "servoscope_slot", None) for w in server.WORKERS.values())
    worker.servoscope_slot = free_slot(taken)


def post_fork(server: Arbiter, worker: Worker) -> None:
    from servoscope.scrape_targets import publish_worker

    publish_worker(proc_name, worker.servoscope_slot, server.num_workers, bind)


def child_exit(server: Arbiter, worker: Worker) -> None:
    from servoscope.scrape_targets import forget_worker

    # Runs in the master, the worker already gone from WORKERS. With enough workers left
    # (after TTOU) nobody refills this slot, so Prometheus must stop scraping it.
    slot = getattr(worker, "servoscope_slot", None)
    if slot is not None and len(server.WORKERS) >= server.num_workers:
        forget_worker(proc_name, slot)


def worker_exit(server: Arbiter, worker: Worker) -> None:
    from servoscope.telemetry import shutdown_tracing

    shutdown_tracing()
