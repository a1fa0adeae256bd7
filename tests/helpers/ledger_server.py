"""A test replica that keeps a ledger of the POSTs it executed (for chaos runs).

It serves like ``tests/apps/echo_server.py`` (``GET /``, ``/health``, ...),
and every ``POST`` first appends its body as one line to the file named by
``$LEDGER`` (shared by all replicas, ``O_APPEND``), then waits ``?ms=N``
milliseconds (the work), then echoes the body. A body found twice in the
ledger is a non-idempotent request that was executed twice.

Run: ``PORT=8080 LEDGER=/tmp/ledger python tests/helpers/ledger_server.py``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from tests.apps.echo_server import REPLICA, Handler


class LedgerHandler(Handler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fd = os.open(os.environ["LEDGER"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, body.replace(b"\n", b" ") + b"\n")
        finally:
            os.close(fd)
        query = parse_qs(urlsplit(self.path).query)
        time.sleep(float(query.get("ms", ["0"])[-1]) / 1000)
        self._send(200, body, "application/octet-stream")


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), LedgerHandler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"echo server (replica {REPLICA}) on port {server.server_port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
