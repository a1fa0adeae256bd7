"""The routing state the controller publishes to the router process, and its reports.

With the router in its own process (``skyctl.router.process``, started by the
supervisor), each service's runtime holds a :class:`RemoteRouter` instead of
an in-process :class:`~skyctl.router.Router`. It has the same face for the
controller (``start``, ``set_backends``, ``reconfigure``, ``request_rate``,
``replica_stats``, ``stop``) but publishes into the one :class:`RoutingFeed`,
which the API serves as a versioned watch (:mod:`skyctl.routing_wire`), and
reads what the router process reports (request rates, per-replica figures,
passive-health ejections, replica errors) instead of the router's memory.

A service enters the feed when its endpoint "starts", with its stored spec
and port and ``backends: null`` (a router that already serves it keeps its
table); its first routing table follows the first tick. Stopping the
controller does not remove anything: the API closes, and the router process
keeps serving the last table it knew until a controller answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import socket
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from skyctl.clock import Clock
from skyctl.errors import ServiceError
from skyctl.routing_wire import (
    REPORT_PATH,
    WAIT_SECONDS,
    WATCH_PATH,
    backend_to_json,
    check_report,
)
from skyctl.spec import ServiceSection
from skyctl.store import VersionRecord
from skyctl.types import Backend

log = logging.getLogger(__name__)

REPORT_MAX_AGE = 30.0  # seconds: an older report (a router that went away) is not counted


class RoutingFeed:
    """Every service's router settings and table, with versions (see the module docstring)."""

    def __init__(
        self, clock: Clock, held_ports: Callable[[], set[int]] = set, ready: bool = True
    ) -> None:
        """``held_ports``: the ports the router process has open now (``router.json``).
        ``ready=False``: watches are answered only after :meth:`mark_ready` (the daemon
        marks it once every stored service is restored: a full state before that
        would close the endpoints of services not restored yet)."""
        self.clock = clock
        self.ready = ready
        self.held_ports = held_ports
        self.epoch = uuid.uuid4().hex
        self.version = 0
        self._entries: dict[str, dict[str, Any]] = {}
        self._removed: dict[str, int] = {}  # name -> version of its removal
        # stored services not restored yet: a full state does not close their endpoints
        self._kept: set[str] = set()
        self._changed = asyncio.Condition()
        self._closed = False
        self._sinks: dict[str, RemoteRouter] = {}
        # router id -> service -> (received at, report)
        self.reports: dict[str, dict[str, tuple[float, dict[str, Any]]]] = {}
        self.reported_at: dict[str, float] = {}  # router id -> its last report
        self.applied: dict[str, int] = {}  # router id -> feed version its last report had applied

    # ------------------------------------------------------------ publishing
    def put(self, name: str, **fields: Any) -> None:
        entry = dict(self._entries.get(name, {}))
        entry.update(fields)
        self.version += 1
        entry["version"] = self.version
        self._entries[name] = entry
        self._removed.pop(name, None)
        self._kept.discard(name)
        self._notify()

    def keep(self, name: str) -> None:
        """``name`` is stored but not restored yet: routers keep what they have of it."""
        self._kept.add(name)

    def remove(self, name: str) -> None:
        self._kept.discard(name)
        if self._entries.pop(name, None) is None:
            return
        self.version += 1
        self._removed[name] = self.version
        self._notify()

    def _notify(self) -> None:
        async def wake() -> None:
            async with self._changed:
                self._changed.notify_all()

        try:
            asyncio.get_running_loop().create_task(wake())
        except RuntimeError:  # no loop (a unit test publishing synchronously): nobody waits
            pass

    def mark_ready(self) -> None:
        self.ready = True
        self._notify()

    def close(self) -> None:
        """Answer every waiting watch now (the API is closing)."""
        self._closed = True
        self._notify()

    # ------------------------------------------------------------- watching
    def changes(self, epoch: str | None, since: int) -> dict[str, Any]:
        """The answer to a watch from ``epoch``/``since`` (full state on another epoch)."""
        if epoch != self.epoch or since > self.version:
            return {
                "epoch": self.epoch,
                "version": self.version,
                "full": True,
                "services": {n: dict(e) for n, e in self._entries.items()},
                "removed": [],
                "kept": sorted(self._kept),
            }
        return {
            "epoch": self.epoch,
            "version": self.version,
            "full": False,
            "services": {n: dict(e) for n, e in self._entries.items() if e["version"] > since},
            "removed": sorted(n for n, v in self._removed.items() if v > since),
        }

    async def watch(self, epoch: str | None, since: int, wait: float) -> dict[str, Any]:
        """:meth:`changes`, waiting up to ``wait`` seconds for one when there is none."""
        wait = max(0.0, min(wait, WAIT_SECONDS))
        if not self.ready:
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: self.ready or self._closed), wait
                    )
            if not self.ready:
                raise web.HTTPServiceUnavailable(
                    text="the controller is restoring its services: ask again"
                )
        if epoch == self.epoch and since == self.version and not self._closed and wait > 0:
            async with self._changed:
                try:
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: self.version != since or self._closed),
                        wait,
                    )
                except TimeoutError:
                    pass
        return self.changes(epoch, since)

    # -------------------------------------------------------------- reports
    def attach(self, name: str, sink: RemoteRouter) -> None:
        self._sinks[name] = sink

    def detach(self, name: str, sink: RemoteRouter) -> None:
        if self._sinks.get(name) is sink:
            del self._sinks[name]

    def report(self, body: dict[str, Any]) -> None:
        """A router process's report: figures per service, replica errors to act on
        (checked whole first: ValueError, and nothing taken, for a corrupt one)."""
        body = check_report(body)
        router = str(body.get("router") or "router")
        now = self.clock.now()
        services = body.get("services") or {}
        self.reports[router] = {str(n): (now, dict(r)) for n, r in services.items()}
        self.reported_at[router] = now
        # the table version it had applied when it made the report (none of this epoch: 0)
        same_epoch = body.get("epoch") == self.epoch
        self.applied[router] = int(body.get("version") or 0) if same_epoch else 0
        for gone in [r for r, at in self.reported_at.items() if now - at > 10 * REPORT_MAX_AGE]:
            del self.reported_at[gone], self.reports[gone]  # a router process long gone
            self.applied.pop(gone, None)
        for item in body.get("backend_errors") or []:
            name, rid, reason = str(item[0]), int(item[1]), str(item[2])
            sink = self._sinks.get(name)
            if sink is not None:
                sink.backend_error(rid, reason)

    def applied_since(self, version: int) -> bool | None:
        """Whether every router process reporting lately made its latest report with
        ``version`` (or a later one) applied; None when none has reported lately."""
        now = self.clock.now()
        fresh = [r for r, at in self.reported_at.items() if now - at <= REPORT_MAX_AGE]
        if not fresh:
            return None
        return all(self.applied.get(r, 0) >= version for r in fresh)

    def fresh_reports(self, name: str) -> list[dict[str, Any]]:
        """The latest report of each router process about ``name`` (recent ones only)."""
        now = self.clock.now()
        out = []
        for by_service in self.reports.values():
            got = by_service.get(name)
            if got is not None and now - got[0] <= REPORT_MAX_AGE:
                out.append(got[1])
        return out


def add_routes(app: web.Application, feed: Callable[[], RoutingFeed | None], token: str) -> None:
    """The watch and the report endpoints on the controller's API: the API token
    only (the console's read-only cookie does not open them)."""

    def the_feed(request: web.Request) -> RoutingFeed:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, f"Bearer {token}".encode()):
            raise web.HTTPUnauthorized(text="the routing feed needs the API token")
        got = feed()
        if got is None:
            raise ServiceError("this controller embeds its routers: there is no routing feed")
        return got

    async def watch(request: web.Request) -> web.Response:
        q = request.query
        try:
            since, wait = int(q.get("since", "0")), float(q.get("wait", "0"))
        except ValueError:
            raise ServiceError("since: an integer; wait: seconds") from None
        return web.json_response(await the_feed(request).watch(q.get("epoch"), since, wait))

    async def report(request: web.Request) -> web.Response:
        try:
            the_feed(request).report(await request.json())
        except (ValueError, TypeError, IndexError, AttributeError, RecursionError) as e:
            raise ServiceError(f"report: not a routing report ({e})") from None
        return web.json_response({"ok": True})

    app.router.add_get(WATCH_PATH, watch)
    app.router.add_post(REPORT_PATH, report)


def free_port(host: str, port: int = 0) -> int:
    """``port`` (0: any) if it is free on ``host`` now, else OSError (as a router's
    own bind would say: a service whose port is taken is refused at once)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host or "0.0.0.0", port))
        return int(s.getsockname()[1])


def _sum_stats(reports: Sequence[dict[str, Any]]) -> dict[int, dict[str, float]]:
    """Per replica: counts summed over router processes, latencies their maximum."""
    out: dict[int, dict[str, float]] = {}
    for report in reports:
        for rid_text, stats in (report.get("replica_stats") or {}).items():
            into = out.setdefault(int(rid_text), {})
            for key, value in stats.items():
                v = float(value)
                if key.startswith("latency"):
                    into[key] = max(into.get(key, 0.0), v)
                else:
                    into[key] = into.get(key, 0.0) + v
    return dict(sorted(out.items()))


class RemoteRouter:
    """A service's router in the router process, as the controller sees it."""

    def __init__(
        self,
        name: str,
        section: ServiceSection,
        feed: RoutingFeed,
        load: Callable[[], VersionRecord],
        on_backend_error: Callable[[int, str], None] | None = None,
    ) -> None:
        """``load``: the service's current stored version (its spec and secrets)."""
        self.service = name
        self._section = section
        self._feed = feed
        self._load = load
        self._on_backend_error = on_backend_error
        self._started = False
        self._routed: set[int] = set()  # replica ids in the table last published
        self._first_table: int | None = None  # feed version of this controller's first table
        self._left: dict[int, int] = {}  # replica id -> feed version of the table it left

    async def start(self, host: str, port: int | None) -> int:
        """Publish the service's endpoint; the router process listens on it."""
        bound = port or free_port(host)
        if port and port not in self._feed.held_ports():  # the router process's already
            free_port(host, port)
        self._feed.attach(self.service, self)
        self._feed.put(self.service, host=host, port=bound, backends=None, **self._spec())
        self._started = True
        return bound

    def _spec(self) -> dict[str, Any]:
        record = self._load()
        return {
            "spec_version": record.version,
            "yaml": record.yaml_text,
            "source": record.source,
            "secrets": record.secrets_ciphertext,
        }

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """The service is gone (``serve down``): the router process closes its endpoint."""
        del grace_seconds  # the router drains by the service's own drain timeout
        self._feed.detach(self.service, self)
        if self._started:
            self._feed.remove(self.service)
        self._started = False

    def set_backends(self, backends: Sequence[Backend]) -> None:
        self._feed.put(self.service, backends=[backend_to_json(b) for b in backends])
        routed = {b.replica_id for b in backends}
        if self._first_table is None:
            self._first_table = self._feed.version
        for rid in self._routed - routed:
            self._left[rid] = self._feed.version
        for rid in routed:
            self._left.pop(rid, None)
        self._routed = routed

    def settled(self, replica_id: int) -> bool | None:
        """Whether every router process has applied a table without ``replica_id``, so
        the in-flight counts it reports are all there is to drain (None: no router
        process has reported lately). A replica this controller never routed left
        with its first table (the router process may hold an older one)."""
        if replica_id in self._routed or self._first_table is None:
            return False
        return self._feed.applied_since(self._left.get(replica_id, self._first_table))

    def reconfigure(self, section: ServiceSection, secrets: object = None) -> None:
        """``serve update``: the new current version goes to the router process."""
        del secrets  # they travel sealed with the stored version
        self._section = section
        if self._started:
            self._feed.put(self.service, **self._spec())

    @property
    def scheme(self) -> str:
        return "https" if self._section.tls is not None else "http"

    def request_rate(self, window_seconds: float = 60.0) -> float:
        """Requests per second as the router processes last reported (60 s window)."""
        del window_seconds
        return sum(float(r.get("rate_60", 0.0)) for r in self._feed.fresh_reports(self.service))

    def replica_stats(self) -> dict[int, dict[str, float]]:
        return _sum_stats(self._feed.fresh_reports(self.service))

    def ejected(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for report in self._feed.fresh_reports(self.service):
            for rid, until in (report.get("ejected") or {}).items():
                out[int(rid)] = max(out.get(int(rid), 0.0), float(until))
        return dict(sorted(out.items()))

    def open_error(self) -> str:
        """Why a router process could not open the endpoint (empty: open, or unknown)."""
        errors = [str(r.get("error") or "") for r in self._feed.fresh_reports(self.service)]
        return "; ".join(e for e in errors if e)

    def is_open(self) -> bool:
        """A router process has reported the endpoint open (listening) lately."""
        return any(
            not r.get("error") and "rate_60" in r for r in self._feed.fresh_reports(self.service)
        )

    def backend_error(self, replica_id: int, reason: str) -> None:
        if self._on_backend_error is not None:
            self._on_backend_error(replica_id, reason)
