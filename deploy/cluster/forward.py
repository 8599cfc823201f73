"""A port-forward from the host's loopback into the cluster's namespace.

Tests, locust and Chaos Toolkit reach a Service as ``http://127.0.0.1:<port>``: each connection
accepted on the host's loopback is relayed by a thread that has joined the cluster's namespace
and connects to the Service's ClusterIP there. Nothing is routed between the two namespaces, so
no packet of the cluster's can reach the host's interfaces::

    with Forward("10.96.12.34", 8080) as port:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz")
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

from deploy.cluster import netns

CONNECT_TIMEOUT_S = 5.0


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        # Pass the half-close on, so HTTP/1.1 connection shutdowns look the same on both sides.
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


class Forward:
    """Relays 127.0.0.1:<port> (``port``, chosen free unless given) to ``host:target`` inside."""

    def __init__(self, host: str, target: int, port: int = 0) -> None:
        self.target = (host, target)
        self.listener = socket.create_server(("127.0.0.1", port), backlog=256)
        self.port: int = self.listener.getsockname()[1]
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._accept, name="forward", daemon=True)

    def __enter__(self) -> int:
        self.thread.start()
        return self.port

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.closed.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(timeout=5)

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        try:
            netns.join_this_thread()
            upstream = socket.create_connection(self.target, timeout=CONNECT_TIMEOUT_S)
        except OSError:
            client.close()  # the caller sees a reset connection, as with an unreachable server
            return
        upstream.settimeout(None)
        back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
        back.start()
        _pump(client, upstream)
        back.join()
        client.close()
        upstream.close()
