"""The routers of the router process: one per service, as the controller's watch says.

:meth:`Endpoints.apply` takes one answer of the routing watch
(:mod:`skyctl.routing_wire`) and makes the process's routers match it: a new
service gets a :class:`~skyctl.router.Router` listening on its stored port, a
new spec version reconfigures it (policy, timeouts, auth keys, TLS files; TLS
turned on or off, or another port, reopens it), a table replaces its backends
(``null``: keep the last one, as after a controller restart before its first
tick), and a removed service closes its endpoint. An endpoint that cannot open
(its port taken) is retried by :meth:`retry_unopened` and reported with why.

Nothing here needs the controller to be alive: between answers the routers
keep serving the last table they got. :meth:`report` is what goes back (request
rate, per-replica figures, the request duration and time-to-first-byte
histograms, ejections, errors), with the replica errors the routers raised
since the last report (:meth:`take_backend_errors`).

With ``shared_metrics`` (a directory: this process is one of several workers
sharing each port), each endpoint's ``/metrics`` answers the sum over the
workers (:mod:`skyctl.router.worker_metrics`); :meth:`publish_metrics` writes
this worker's share, every :data:`~skyctl.router.worker_metrics.PUBLISH_SECONDS`.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from skyctl.clock import Clock
from skyctl.errors import SkyctlError
from skyctl.metric_samples import pack, snapshot
from skyctl.router.security import router_secrets
from skyctl.router.server import Router
from skyctl.router.worker_metrics import WorkerMetrics
from skyctl.routing_wire import backend_from_json
from skyctl.secrets import Secrets
from skyctl.spec import ServiceSpec

log = logging.getLogger(__name__)

REMOVE_GRACE = 5.0  # seconds a removed service's in-flight requests may take
MAX_QUEUED_ERRORS = 1000  # replica errors kept while the controller is unreachable


class Endpoints:
    """Every service's router in this process (see the module docstring)."""

    def __init__(self, secrets: Secrets, clock: Clock, shared_metrics: Path | None = None) -> None:
        self._secrets = secrets
        self._clock = clock
        self._shared_root = shared_metrics
        self._shared: dict[str, WorkerMetrics] = {}  # service -> its workers' sum
        self._own_registry: dict[str, CollectorRegistry] = {}  # this process's figures
        self.routers: dict[str, Router] = {}
        self._entries: dict[str, dict[str, Any]] = {}  # the last entry of each service
        self._specs: dict[str, ServiceSpec] = {}
        self.errors: dict[str, str] = {}  # service -> why its endpoint is not open
        self._backend_errors: list[list[Any]] = []
        self.errors_queued = asyncio.Event()  # a replica error waits to be reported

    @property
    def entries(self) -> dict[str, dict[str, Any]]:
        """The last entry of each service (what a restarted process starts from)."""
        return dict(self._entries)

    @property
    def ports(self) -> dict[str, int]:
        return {n: r.port for n, r in self.routers.items() if r.listening}

    async def apply(self, answer: dict[str, Any]) -> None:
        services: dict[str, dict[str, Any]] = answer.get("services") or {}
        if answer.get("full"):  # what it does not name (or keep) is gone
            removed = set(self._entries) - set(services) - set(answer.get("kept") or ())
        else:
            removed = set(answer.get("removed") or ())
        for name in sorted(removed):
            await self._remove(name)
        for name, entry in sorted(services.items()):
            try:
                await self._apply_one(name, entry)
            except (SkyctlError, OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                # (a malformed entry is that service's error: the ones after it still apply)
                self.errors[name] = f"endpoint not open: {e}"
                log.error("router %s: %s", name, self.errors[name])

    async def _apply_one(self, name: str, entry: dict[str, Any]) -> None:
        old = self._entries.get(name)
        if entry.get("backends") is None and old is not None:
            entry = {**entry, "backends": old.get("backends")}  # keep the table we know
        self._entries[name] = entry
        spec = self._specs.get(name)
        if spec is None or old is None or old.get("spec_version") != entry["spec_version"]:
            # in a thread: a big spec parses for seconds, and this loop routes every service
            spec = await asyncio.to_thread(
                self._secrets.open, entry["yaml"], entry.get("source"), entry.get("secrets")
            )
            self._specs[name] = spec
        router = self.routers.get(name)
        if router is not None:
            prev = old or {}
            moved = prev.get("port") != entry["port"] or prev.get("host") != entry["host"]
            tls_flip = (router.scheme == "https") != (spec.service.tls is not None)
            if moved or tls_flip or not router.listening:
                await self._close(name, grace=REMOVE_GRACE)
                router = None
            elif old is not None and old.get("spec_version") != entry["spec_version"]:
                router.reconfigure(spec.service, router_secrets(spec))
        if router is None:
            router = await self._open(name, spec, entry)
        if router is not None and entry.get("backends") is not None:
            router.set_backends([backend_from_json(b) for b in entry["backends"]])

    async def _open(self, name: str, spec: ServiceSpec, entry: dict[str, Any]) -> Router | None:
        router = Router(
            name,
            spec.service,
            clock=self._clock,
            on_backend_error=lambda rid, reason: self._backend_error(name, rid, reason),
            secrets=router_secrets(spec),
        )
        if entry.get("backends") is not None:
            router.set_backends([backend_from_json(b) for b in entry["backends"]])
        try:
            await router.start(entry["host"], int(entry["port"]))
        except (SkyctlError, OSError) as e:
            self.errors[name] = f"endpoint not open: {e}"
            log.error("router %s: cannot listen on %s: %s", name, entry["port"], e)
            return None
        self.errors.pop(name, None)
        self.routers[name] = router
        self._own_registry[name] = router.registry
        if self._shared_root is not None:
            shared = WorkerMetrics(self._shared_root, name, router.port, router.registry)
            router.registry = shared.registry  # what its /metrics answers: the sum
            self._shared[name] = shared
            self._publish(name, shared)
        log.info("router %s: listening on %s:%d", name, entry["host"], router.port)
        return router

    async def retry_unopened(self) -> None:
        """Try again to open the endpoints that could not open (a port taken, a file)."""
        for name in [n for n in self._entries if n not in self.routers]:
            entry, spec = self._entries[name], self._specs.get(name)
            if spec is not None:
                await self._open(name, spec, entry)

    async def _remove(self, name: str) -> None:
        self._entries.pop(name, None)
        self._specs.pop(name, None)
        self.errors.pop(name, None)
        await self._close(name, grace=REMOVE_GRACE)

    async def _close(self, name: str, grace: float) -> None:
        router = self.routers.pop(name, None)
        self._own_registry.pop(name, None)
        shared = self._shared.pop(name, None)
        final = shared.own_snapshot() if shared is not None else None
        if router is not None:
            await router.stop(grace)
            log.info("router %s: endpoint closed", name)
        if shared is not None:
            try:
                shared.close(final)
            except OSError as e:
                log.warning("router %s: shared metrics not closed: %s", name, e)

    def publish_metrics(self) -> None:
        """Write this worker's figures of every endpoint for the other workers."""
        for name, shared in list(self._shared.items()):
            self._publish(name, shared)

    def _publish(self, name: str, shared: WorkerMetrics) -> None:
        try:
            shared.publish()
        except OSError as e:  # a full disk: this worker's share is missing from the sums
            log.warning("router %s: metrics not published for the other workers: %s", name, e)

    async def close(self, grace: float) -> None:
        """Stop every endpoint (in-flight requests get ``grace`` seconds)."""
        await asyncio.gather(*(self._close(n, grace) for n in list(self.routers)))

    # --------------------------------------------------------------- reports
    def _backend_error(self, name: str, replica_id: int, reason: str) -> None:
        if len(self._backend_errors) < MAX_QUEUED_ERRORS:
            self._backend_errors.append([name, replica_id, reason])
        self.errors_queued.set()

    def take_backend_errors(self) -> list[list[Any]]:
        taken, self._backend_errors = self._backend_errors, []
        self.errors_queued.clear()
        return taken

    def requeue(self, errors: list[list[Any]]) -> None:
        """Errors a failed report could not deliver: sent with the next one."""
        self._backend_errors = (errors + self._backend_errors)[:MAX_QUEUED_ERRORS]

    def report(self, router_id: str) -> dict[str, Any]:
        services: dict[str, Any] = {}
        for name in self._entries:
            router = self.routers.get(name)
            if router is None:
                if name in self.errors:  # one still opening (its start awaited) is not said failed
                    services[name] = {"error": self.errors[name]}
                continue
            services[name] = {
                "rate_60": router.request_rate(60.0),
                "replica_stats": {str(k): v for k, v in router.replica_stats().items()},
                "ejected": {str(k): v for k, v in router.ejected().items()},
                "histograms": pack(snapshot(self._own_registry[name], types=("histogram",))),
                "error": "",
            }
        return {"router": router_id, "services": services}
