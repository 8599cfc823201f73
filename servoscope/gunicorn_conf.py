"""The gunicorn configuration every process of the stack runs with.

Bind address, workers and threads come from the environment the stack sets
(``SERVOSCOPE_BIND``, ``SERVOSCOPE_WORKERS``, ``SERVOSCOPE_THREADS``). The app is
loaded in each worker after fork (no preload) so tracing threads live there.
"""

import os

bind = os.environ.get("SERVOSCOPE_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("SERVOSCOPE_WORKERS", "1"))
threads = int(os.environ.get("SERVOSCOPE_THREADS", "8"))
worker_class = "gthread"
keepalive = 30
graceful_timeout = 5
timeout = 30
accesslog = None  # servoscope.inbound writes one JSON line per request instead
errorlog = "-"
loglevel = "warning"
proc_name = os.environ.get("SERVOSCOPE_SERVICE", "servoscope")


def worker_exit(server, worker):
    from servoscope.telemetry import shutdown_tracing

    shutdown_tracing()
