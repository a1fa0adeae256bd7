"""A tiny stdlib-only HTTP server that test replicas run (reads ``$PORT``).

Routes (every answer carries ``X-Replica-Id`` from ``$SKYCTL_REPLICA_ID``):

- ``GET /``: JSON ``{"replica", "version", "service", "pid", "path"}``;
- ``GET /health``: ``ok``;
- ``GET /slow?ms=N``: answers after N milliseconds (default 500);
- ``GET /stream?chunks=N&ms=M``: N chunked lines, M milliseconds apart;
- ``GET /status/<code>``: answers that HTTP status;
- ``POST`` any path: echoes the body back.

Run: ``PORT=8080 python tests/apps/echo_server.py``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

REPLICA = os.environ.get("SKYCTL_REPLICA_ID", "")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet unless asked
        if os.environ.get("ECHO_SERVER_LOG"):
            super().log_message(format, *args)

    def _send(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Replica-Id", REPLICA)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path == "/health":
            self._send(200, b"ok")
        elif url.path == "/slow":
            time.sleep(float(query.get("ms", "500")) / 1000)
            self._send(200, f"slow {REPLICA}".encode())
        elif url.path == "/stream":
            self._stream(int(query.get("chunks", "5")), float(query.get("ms", "100")) / 1000)
        elif url.path.startswith("/status/"):
            code = int(url.path.rsplit("/", 1)[1])
            self._send(code, f"status {code} from {REPLICA}".encode())
        else:
            info = {
                "replica": REPLICA,
                "version": os.environ.get("SKYCTL_VERSION", ""),
                "service": os.environ.get("SKYCTL_SERVICE", ""),
                "pid": os.getpid(),
                "path": self.path,
            }
            self._send(200, json.dumps(info).encode(), "application/json")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._send(200, body, self.headers.get("Content-Type") or "application/octet-stream")

    def _stream(self, chunks: int, pause: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("X-Replica-Id", REPLICA)
        self.end_headers()
        for i in range(chunks):
            data = f"chunk {i} from {REPLICA}\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
            if i + 1 < chunks:
                time.sleep(pause)
        self.wfile.write(b"0\r\n\r\n")


def main() -> None:
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer((os.environ.get("HOST", "127.0.0.1"), port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"echo server (replica {REPLICA}) on port {port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
