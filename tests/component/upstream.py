"""A small upstream for the gateway's tests, run as a real process.

    python -m tests.component.upstream --port 8200 --name a

Every path answers a JSON echo of the request (method, path, query, headers, body).
Query parameters steer one request: ``status``, ``delay_ms``, ``retry_after``,
``tag`` (hits are counted per tag), ``fail_first`` (the first N hits of the tag
answer ``status``, later ones 200) and ``hop`` (answer with hop-by-hop headers).
``POST /_mode {"status": 500, "delay_ms": 0}`` makes every request answer like that
(``{}`` resets); ``GET /_stats?tag=x`` returns hits and peak concurrency of a tag.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

lock = threading.Lock()
hits: dict[str, int] = {}
active: dict[str, int] = {}
peak: dict[str, int] = {}
mode: dict[str, Any] = {}
NAME = "upstream"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real upstream
    disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls on small bodies

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Upstream-Name", NAME)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if url.path == "/_mode":
            mode.clear()
            mode.update(json.loads(body or b"{}"))
            return self._send(200, dict(mode))
        if url.path == "/_stats":
            tag = query.get("tag", "")
            with lock:
                return self._send(200, {"hits": hits.get(tag, 0), "peak": peak.get(tag, 0)})
        tag = query.get("tag", "")
        with lock:
            hits[tag] = count = hits.get(tag, 0) + 1
            active[tag] = active.get(tag, 0) + 1
            peak[tag] = max(peak.get(tag, 0), active[tag])
        try:
            delay = float(mode.get("delay_ms", query.get("delay_ms", 0))) / 1000
            if delay:
                time.sleep(delay)
            status = int(mode.get("status", query.get("status", 200)))
            if "fail_first" in query and count > int(query["fail_first"]):
                status = 200
            headers = {}
            if "retry_after" in query:
                headers["Retry-After"] = query["retry_after"]
            if "hop" in query:
                headers.update(
                    {"Connection": "X-Hop-Secret", "X-Hop-Secret": "1", "Keep-Alive": "timeout=5"}
                )
            self._send(
                status,
                {
                    "server": NAME,
                    "method": self.command,
                    "path": url.path,
                    "query": url.query,
                    "headers": dict(self.headers.items()),
                    "body": body.decode(errors="replace"),
                    "hit": count,
                    "peer_port": self.client_address[1],
                },
                headers,
            )
        finally:
            with lock:
                active[tag] -= 1

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # The listen backlog is set when the constructor binds: a class attribute, or the
    # default 5 drops simultaneous connects (a concurrency test opens 8 at once).
    request_queue_size = 128


def main() -> None:
    global NAME
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="upstream")
    args = parser.parse_args()
    NAME = args.name
    server = Server(("127.0.0.1", args.port), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
