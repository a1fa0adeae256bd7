"""The router's own endpoints: ``/-/skyctl/health`` (JSON) and its metrics
(``/-/skyctl/metrics`` and ``service.router.metrics_path``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from skyctl.router import metrics
from skyctl.router.front import Connection, Request
from skyctl.router.headers import request_id

PREFIX = "/-/skyctl/"


def answer(
    request: Request, out: Connection, registry: CollectorRegistry, health: dict[str, object]
) -> None:
    """Answer a request for one of the router's own paths."""
    rid = request_id(request.head.request_id)
    path = request.path
    if path.startswith(PREFIX):
        name = path[len(PREFIX) :]
        if name == "health":
            out.send_json(200, health, rid)
            return
        if name != "metrics":
            error = f"unknown router path {path!r}; known: health, metrics"
            out.send_json(404, {"error": error}, rid)
            return
    lines = b"Content-Type: %b\r\nX-Request-Id: %b\r\n" % (metrics.CONTENT_TYPE.encode(), rid)
    out.send(200, b"OK", lines, metrics.render(registry))
