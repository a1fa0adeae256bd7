"""The controller loop and the operations the API exposes.

One asyncio task runs :meth:`Controller.run`, a scheduler: each service is
ticked by its own task, at most one at a time per service, when it is woken
(a provider signal, a probe result, an actuator outcome, an API call) or when
its period is up: ``tick_seconds`` while it has something to do,
``quiet_tick_seconds`` once a tick found nothing to do (every replica READY,
nothing written, no call in flight). So a slow tick of one service never
delays another's, and services with nothing to do cost little. An exception in
one service is logged and recorded as an event and never stops the loop.

Quiet ticks keep to each service's own phase of the quiet period (the k-th
service scheduled gets ``frac(k * 0.618...)`` of it, as probes do), so services
created or woken together do not tick together every period after: 1,000
quiet services tick about 100 a second, not 1,000 in one burst every 10 s
(a burst held the event loop for hundreds of milliseconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import unicodedata
from pathlib import Path
from typing import Any

from policies import failures
from policies.registry import policy_for
from providers.registry import ProviderSet, canonical
from skyctl.clock import Clock
from skyctl.controller import updates
from skyctl.controller.describe import describe_service
from skyctl.controller.keyless import keyless_warning
from skyctl.controller.metrics import ControllerMetrics
from skyctl.controller.reconcile import Reconciler
from skyctl.controller.routing_feed import RoutingFeed
from skyctl.controller.runtime import ServiceRuntime, load_spec, make_runtime
from skyctl.errors import (
    ConfigError,
    ServiceError,
    ServiceExists,
    ServiceNotFound,
    SkyctlError,
    StoreError,
)
from skyctl.lifecycle import EndReason, ReplicaStatus
from skyctl.secrets import KEY_FILE_NAME, Secrets
from skyctl.spec import ServiceSpec
from skyctl.store import ServiceRecord, ServiceStatus, Store
from skyctl.types import InstanceEvent, InstanceEventKind

log = logging.getLogger(__name__)

#: a service whose last tick found nothing to do is ticked this often (clock
#: seconds) unless woken: provider listings without push signals, autoscaling
QUIET_TICK_SECONDS = 10.0
#: the list of services is re-read at least this often (API calls re-read it at once)
NAMES_REFRESH_SECONDS = 30.0
_GOLDEN = 0.6180339887498949  # the fractional part of the golden ratio

#: SkyPilot's service-name rule (the spec parser applies it to `name:` too)
NAME_RE = re.compile(r"[a-zA-Z]([-_.a-zA-Z0-9]{0,61}[a-zA-Z0-9])?")


class Controller:
    def __init__(
        self,
        store: Store,
        providers: ProviderSet,
        clock: Clock,
        *,
        tick_seconds: float = 2.0,
        exit_when_idle: bool = False,
        gc_clouds: tuple[str, ...] = ("local",),
        secrets: Secrets | None = None,
        quiet_tick_seconds: float | None = None,
        deadlines: dict[str, float] | None = None,
    ) -> None:
        """``secrets`` seals the specs' secrets (default: a key file beside the database);
        ``deadlines`` overrides per-call deadlines (``skyctl.controller.actuator.DEADLINES``)."""
        self.store = store
        self.providers = providers
        self.clock = clock
        self.tick_seconds = tick_seconds
        self.quiet_tick_seconds = max(
            tick_seconds, QUIET_TICK_SECONDS if quiet_tick_seconds is None else quiet_tick_seconds
        )
        self.exit_when_idle = exit_when_idle
        self.gc_clouds = gc_clouds
        self.secrets = secrets or Secrets(store.path.parent / KEY_FILE_NAME)
        self.reconciler = Reconciler(
            store, providers, clock, self.secrets, wake=self.wake, deadlines=deadlines
        )
        self.metrics = ControllerMetrics(self)
        self.runtimes: dict[str, ServiceRuntime] = {}
        self.routing_feed: RoutingFeed | None = None  # set: routers in the router process
        # one runtime (one router) per service: creating one is serialized per name
        self._runtime_locks: dict[str, asyncio.Lock] = {}
        self.unopened: dict[str, str] = {}  # service -> why its endpoint did not open
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._ticks = 0
        self._had_service = False  # (or was asked for one): idle from then on, it may exit
        self._creating = 0  # creates in progress: never idle meanwhile
        self._names: list[str] | None = None  # the services, re-read when stale
        self._names_read_at = 0.0
        self._dirty: set[str] = set()  # woken services
        self._due: dict[str, float] = {}  # when each service's next tick is due
        self._phases: dict[str, float] = {}  # each service's share of the quiet period
        self._next_phase = 0
        self._ticking: dict[str, asyncio.Task[None]] = {}

    # --------------------------------------------------------------- running
    async def start(self) -> None:
        """Restore every stored service (routers on their ports) and collect garbage."""
        for svc in self.store.list_services():
            try:
                await self._ensure_runtime(svc)
            except (SkyctlError, OSError) as e:  # e.g. its port is taken: ticks retry
                log.error("service %s: cannot restore it yet: %s", svc.name, e)
                if self.routing_feed is not None:  # its endpoint keeps its last table
                    self.routing_feed.keep(svc.name)
        await self._collect_garbage()

    async def run(self) -> None:
        """Schedule ticks until :meth:`request_stop` (or idle exit)."""
        try:
            while not self._stopped.is_set():
                self._wake.clear()
                delay = self._schedule()
                self._ticks += 1
                if (
                    self.exit_when_idle
                    and self._had_service
                    and not self.runtimes
                    and not self._creating
                    and not self._ticking
                    and self.reconciler.actuator.idle  # a purged service's terminate ends first
                ):
                    log.info("no services left; controller exits")
                    break
                sleeper = asyncio.ensure_future(self.clock.sleep(delay))
                waker = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(self._stopped.wait())
                try:
                    await asyncio.wait(
                        {sleeper, waker, stopper}, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    for fut in (sleeper, waker, stopper):
                        fut.cancel()
        finally:
            self._stopped.set()
            ticking = list(self._ticking.values())
            for task in ticking:
                task.cancel()
            for task in ticking:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def request_stop(self) -> None:
        self._stopped.set()

    def wake(self, service: str | None = None) -> None:
        """A tick soon: of ``service``, or of every service (and re-read their list)."""
        if service is None:
            self._names = None
            self._due.clear()  # every service is due
        else:
            self._dirty.add(service)
            if self._names is not None and service not in self._names:
                self._names = None  # a new service
        self._wake.set()

    @property
    def ticks(self) -> int:
        """Scheduler rounds so far."""
        return self._ticks

    def _schedule(self) -> float:
        """Start the ticks that are due; return how long until the next one is."""
        now = self.clock.now()
        if self._names is None or now - self._names_read_at >= NAMES_REFRESH_SECONDS:
            self._names = [s.name for s in self.store.list_services()]
            self._names_read_at = now
            for name in list(self._due):
                if name not in self._names:
                    del self._due[name]
            for name in list(self._phases):
                if name not in self._names:
                    del self._phases[name]
        loop = asyncio.get_running_loop()
        nearest = now + self.tick_seconds
        for name in self._names:
            if name in self._ticking:
                continue
            due = self._due.get(name, now)
            if name in self._dirty or due <= now:
                self._dirty.discard(name)
                self._ticking[name] = loop.create_task(self._tick_task(name), name=f"tick:{name}")
            else:
                nearest = min(nearest, due)
        return max(0.0, nearest - now)

    async def _tick_task(self, name: str) -> None:
        try:
            svc = self.store.get_service(name)
            if svc is None:
                rt = self.runtimes.get(name)
                if rt is not None:  # purged while running: nothing of it may keep running
                    await self.reconciler.sweep_purged(rt)
                await self._drop_runtime(name)
                self._names = None  # re-read the list
                return
            await self._guarded_tick(svc)
        finally:
            self._ticking.pop(name, None)
            rt = self.runtimes.get(name)
            now = self.clock.now()
            if rt is not None and rt.quiet:  # on its phase, half a period to 1.5 periods on
                due = self._on_phase(name, now + self.quiet_tick_seconds / 2)
            else:
                due = now + self.tick_seconds
            if rt is not None and rt.next_at is not None and now < rt.next_at < due:
                due = rt.next_at  # held-back launches may go then
            self._due[name] = due
            if name in self._dirty or name not in self.runtimes:
                self._wake.set()

    def _on_phase(self, name: str, earliest: float) -> float:
        """The first time from ``earliest`` on the service's phase of the quiet period."""
        phase = self._phases.get(name)
        if phase is None:
            self._next_phase += 1
            phase = self._phases[name] = (self._next_phase * _GOLDEN) % 1.0
        period = self.quiet_tick_seconds
        return earliest + (phase * period - earliest) % period

    async def tick_all(self) -> None:
        """Tick every service once, concurrently, and wait for all (tests, tools)."""
        services = self.store.list_services()
        await asyncio.gather(*(self._guarded_tick(svc) for svc in services))

    async def _guarded_tick(self, svc: ServiceRecord) -> None:
        try:
            with self.metrics.tick_seconds.time():
                await self._tick_service(svc)
        except asyncio.CancelledError:
            raise
        except Exception as result:  # one service's failure never stops the others
            msg = f"{type(result).__name__}: {result}"
            rt = self.runtimes.get(svc.name)
            again = rt is not None and rt.tick_error == msg  # its traceback is logged once
            log.log(
                logging.DEBUG if again else logging.ERROR,
                "service %s: tick failed: %r",
                svc.name,
                result,
                exc_info=None if again or isinstance(result, StoreError) else result,  # disk full
            )
            if rt is not None:
                rt.last_error = msg
                if not again:
                    rt.tick_error = msg
                    with contextlib.suppress(Exception):
                        self.store.add_event(svc.name, "error", msg, now=self.clock.now())
        else:
            rt = self.runtimes.get(svc.name)
            if rt is not None and rt.tick_error and rt.last_error == rt.tick_error:
                rt.last_error = ""  # the failure is over (its event stays in the log)

    async def _tick_service(self, svc: ServiceRecord) -> None:
        try:
            rt = await self._ensure_runtime(svc)
        except ServiceNotFound:  # deleted while this tick waited (a failed create)
            return
        except (SkyctlError, OSError) as e:  # its port taken, a TLS file gone: shown
            self.unopened[svc.name] = f"endpoint not open: {e}"
            raise
        self.unopened.pop(svc.name, None)
        gone = await self.reconciler.tick(rt, svc)
        if gone:
            await self._drop_runtime(svc.name)
            self._names = None

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Graceful stop: routers finish in-flight requests; replicas keep running."""
        self._stopped.set()
        await self.reconciler.actuator.close()  # calls in flight stop; their intents stay
        for name in list(self.runtimes):
            await self._drop_runtime(name, grace_seconds=grace_seconds)
        await self.providers.close()

    # ------------------------------------------------------------ runtimes
    async def _ensure_runtime(self, svc: ServiceRecord) -> ServiceRuntime:
        """The service's runtime, made once: a create and a tick (or two ticks) that ask
        at the same time get the same one, so a service never has two routers."""
        rt = self.runtimes.get(svc.name)
        if rt is not None:
            return rt
        lock = self._runtime_locks.setdefault(svc.name, asyncio.Lock())
        async with lock:
            rt = self.runtimes.get(svc.name)
            if rt is not None:
                return rt
            current = self.store.get_service(svc.name)  # as it is now, not when asked
            if current is None:
                raise ServiceNotFound(f"no service named {svc.name!r}")
            return await self._make_runtime(current)

    async def _make_runtime(self, svc: ServiceRecord) -> ServiceRuntime:
        version = self.store.get_version(svc.name, svc.current_version)
        spec = await asyncio.to_thread(load_spec, version, self.secrets)  # seconds, if huge
        name = svc.name
        rt = make_runtime(  # with a feed: the router runs in its own process
            name,
            spec,
            clock=self.clock,
            wake=lambda: self.wake(name),
            feed=self.routing_feed,
            store=self.store,
        )
        rt.specs[svc.current_version] = spec
        rt.prober.on_probe = self.metrics.probe_observer(svc.name)
        for cloud in {canonical(c.cloud) for c in spec.resources.candidates}:
            provider = self.providers.get(cloud)
            provider.set_event_sink(self._on_provider_event)
            self.reconciler.actuator.set_limit(cloud, provider.max_concurrent_calls)
        port = svc.router_port
        try:
            port = await rt.router.start(svc.router_host, port or spec.service.router.port)
        except (SkyctlError, OSError) as e:
            if svc.status is not ServiceStatus.SHUTTING_DOWN:
                raise
            # going down needs no endpoint: its replicas are terminated all the same
            log.warning("service %s: shutting down without its endpoint: %s", svc.name, e)
            rt.last_error = f"endpoint not started: {e}"
        rt.prober.start()
        self.runtimes[svc.name] = rt
        self._had_service = True
        if svc.router_port != port:
            self.store.update_service(svc.name, now=self.clock.now(), router_port=port)
        return rt

    async def _drop_runtime(self, name: str, grace_seconds: float = 5.0) -> None:
        rt = self.runtimes.pop(name, None)
        lock = self._runtime_locks.get(name)
        if lock is not None and not lock.locked():
            del self._runtime_locks[name]
        if rt is None:
            return
        await rt.prober.close()
        await rt.router.stop(grace_seconds)

    def _on_provider_event(self, event: InstanceEvent) -> None:
        """A push signal: take the replica out of routing now, then reconcile."""
        rt = self.runtimes.get(event.service)
        replica = self.store.get_replica(event.service, event.replica_id) if rt else None
        if rt is None or replica is None or not replica.is_live:
            return
        if event.kind in (InstanceEventKind.PREEMPTED, InstanceEventKind.EXITED):
            rt.table.gone(event.replica_id)
        elif event.kind is InstanceEventKind.NOTICE:  # drained, unless it is the last one serving
            rt.table.notice(event.replica_id, event.at)
        self.wake(event.service)

    async def _collect_garbage(self) -> None:
        """Terminate instances of services the store does not know, once each provider
        has recovered what a killed controller left unrecorded (``Provider.recover``)."""
        known = {s.name for s in self.store.list_services()}
        clouds = set(self.gc_clouds)
        for name in known:
            with contextlib.suppress(SkyctlError):
                svc = self.store.get_service(name)
                if svc is not None:
                    spec = self._spec_of(svc)
                    clouds |= {canonical(c.cloud) for c in spec.resources.candidates}
        for cloud in sorted(clouds):
            try:
                provider = self.providers.get(cloud)
                await provider.recover()
                for service in await provider.list_services():
                    if service in known:
                        continue
                    for inst in await provider.list_instances(service):
                        what = f"{inst.instance_id} of unknown service {service}"
                        log.warning("garbage collection: terminating %s", what)
                        await provider.terminate(inst.instance_id)
            except SkyctlError as e:
                log.warning("garbage collection on %s skipped: %s", cloud, e)

    def _spec_of(self, svc: ServiceRecord) -> ServiceSpec:
        version = self.store.get_version(svc.name, svc.current_version)
        return load_spec(version, self.secrets)

    # -------------------------------------------------------- API operations
    async def create_service(
        self,
        yaml_text: str,
        source: str | None,
        name: str | None = None,
        *,
        envs: dict[str, str] | None = None,
        secrets: dict[str, str] | None = None,
        api_keys: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        self._creating += 1  # never idle meanwhile
        try:
            # secrets redacted and encrypted, with the command line's --env/--secret values
            # (in a thread: a 256 KiB spec parses for seconds, the loop must not stall)
            sealed = await asyncio.to_thread(
                self.secrets.seal, yaml_text, source, envs=envs, secrets=secrets, api_keys=api_keys
            )
            spec = sealed.spec
            # a `name:` SkyPilot takes for a task but no service can have (7b-chat): the file's
            written = spec.name if spec.name and NAME_RE.fullmatch(spec.name) else None
            name = name or written or _name_from(source)
            if not NAME_RE.fullmatch(name):
                raise ServiceError(
                    f"service name {name!r}: use letters, digits, '-', '_' and '.', starting with "
                    "a letter and ending with a letter or digit, at most 63 characters"
                )
            if self.store.get_service(name) is not None:
                raise ServiceExists(
                    f"service {name!r} already exists; use `skyctl serve update {name} FILE`"
                )
            self._check_placeable(spec)
            svc = self.store.create_service(
                name,
                sealed.yaml_text,
                now=self.clock.now(),
                router_host=spec.service.router.host,
                router_port=spec.service.router.port,
                source=source,
                secrets_ciphertext=sealed.ciphertext,
            )
            try:
                await self._ensure_runtime(svc)
            except (SkyctlError, OSError) as e:  # a taken port, a TLS file that is not there
                self.store.delete_service(name)
                why = str(e)
                if isinstance(e, OSError):  # it said only "[Errno 98] Address already in use"
                    router = spec.service.router
                    why = f"{router.host}:{router.port} (service.router.port): {e.strerror or e}"
                raise ConfigError(f"service {name!r}: cannot open its endpoint: {why}") from None
            self.store.add_event(
                name, "created", f"version 1, policy {policy_for(spec)}", now=self.clock.now()
            )
            self.wake(name)
            return self._warned(name, spec, self.describe(name))
        finally:  # asked for a service: refused, with none left, it exits when idle
            self._creating -= 1
            self._had_service = True

    def _warned(self, name: str, spec: ServiceSpec, answer: dict[str, Any]) -> dict[str, Any]:
        """``answer`` with the ``warnings`` the CLI prints (an endpoint with no API key),
        each also in the service's events."""
        warning = keyless_warning(name, spec)
        if not warning:
            return answer
        self.store.add_event(name, "warning", warning, now=self.clock.now())
        return {**answer, "warnings": [warning]}

    async def update_service(
        self,
        name: str,
        yaml_text: str,
        source: str | None,
        *,
        mode: str | None = None,
        envs: dict[str, str] | None = None,
        secrets: dict[str, str] | None = None,
        api_keys: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """``serve update`` (skyctl.controller.updates): a new version, or none if identical."""
        return await updates.update_service(
            self, name, yaml_text, source, mode=mode, envs=envs, secrets=secrets, api_keys=api_keys
        )

    async def retry_service(self, name: str) -> dict[str, Any]:
        """An explicit retry: forget the current version's failures (a FAILED service
        launches again, any backoff is lifted); plan() does the rest."""
        svc = self._get(name)
        if svc.status is ServiceStatus.SHUTTING_DOWN:
            raise ServiceError(f"service {name!r} is shutting down")
        state = self.store.policy_state(name)
        state[failures.STATE_KEY] = failures.retry(
            state.get(failures.STATE_KEY) or {}, svc.current_version
        )
        self.store.set_policy_state(name, state)
        rt = self.runtimes.get(name)
        if rt is not None:
            rt.policy_state = None  # the tick reads it again from the store
        self.store.add_event(
            name,
            "retry",
            f"version {svc.current_version}: failures forgotten",
            now=self.clock.now(),
        )
        self.wake(name)  # that service alone: the others keep their phases
        return self.describe(name)

    async def delete_service(self, name: str) -> dict[str, Any]:
        """Begin the shutdown; the answer names the clouds where its instances may be,
        so the CLI can confirm with each provider that none is left."""
        svc = self._get(name)
        rows = self.store.list_replicas(name, include_terminated=True)
        clouds = {canonical(r.location.cloud) for r in rows}
        with contextlib.suppress(SkyctlError):
            spec = self._spec_of(svc)
            clouds |= {canonical(c.cloud) for c in spec.resources.candidates}
        if svc.status is not ServiceStatus.SHUTTING_DOWN:
            self.store.update_service(
                name, now=self.clock.now(), status=ServiceStatus.SHUTTING_DOWN
            )
            self.store.add_event(name, "down", "shutting down", now=self.clock.now())
        self.wake(name)
        return {
            "name": name,
            "status": ServiceStatus.SHUTTING_DOWN.value,
            "clouds": sorted(clouds),
        }

    async def terminate_replica(self, name: str, replica_id: int) -> dict[str, Any]:
        """``serve down NAME --replica-id N`` (as SkyServe): the replica goes (reason
        USER, out of routing now, terminated by the next tick's task) and the plan
        launches a replacement to keep the service at its target."""
        self._get(name)
        r = self.store.get_replica(name, replica_id)
        if r is None or r.status is ReplicaStatus.TERMINATED:
            raise ServiceNotFound(f"service {name!r} has no live replica {replica_id}")
        if r.status is not ReplicaStatus.SHUTTING_DOWN:
            now = self.clock.now()
            self.store.update_replica(
                name, replica_id, now=now, status=ReplicaStatus.SHUTTING_DOWN, reason=EndReason.USER
            )
            self.store.add_event(
                name, "terminate", "USER: serve down --replica-id", now=now, replica_id=replica_id
            )
            rt = self.runtimes.get(name)
            if rt is not None:
                rt.table.gone(replica_id)
        self.wake(name)
        return {"name": name, "replica": replica_id, "status": ReplicaStatus.SHUTTING_DOWN.value}

    def _check_placeable(self, spec: ServiceSpec) -> None:
        """ConfigError now if a cloud's SDK is missing; the provider's one-line
        SpecError if the spec can only go where it can never run (e.g. the local
        provider and a fixed port for several replicas)."""
        clouds = {canonical(c.cloud) for c in spec.resources.candidates}
        for cloud in clouds:
            provider = self.providers.get(cloud)
            if len(clouds) == 1:
                provider.check_spec(spec)

    def _get(self, name: str) -> ServiceRecord:
        svc = self.store.get_service(name)
        if svc is None:
            raise ServiceNotFound(f"no service named {name!r}")
        return svc

    def describe(self, name: str) -> dict[str, Any]:
        """The service as ``serve status -o json`` and the console show it."""
        return describe_service(self, self._get(name))

    def status(self, name: str | None = None) -> list[dict[str, Any]]:
        if name is not None:
            return [self.describe(name)]
        return [self.describe(s.name) for s in self.store.list_services()]

    def events(self, name: str, limit: int = 50) -> list[dict[str, Any]]:
        self._get(name)
        return [
            {"id": e.id, "at": e.at, "kind": e.kind, "replica": e.replica_id, "message": e.message}
            for e in self.store.events(name, limit=limit)
        ]

    def log_path(self, name: str, replica_id: int) -> Path | None:
        self._get(name)
        r = self.store.get_replica(name, replica_id)
        if r is None:
            raise ServiceNotFound(f"service {name!r} has no replica {replica_id}")
        if not r.instance_id:
            return None
        path = self.providers.get(r.location.cloud).log_path(r.instance_id)
        return Path(path) if path else None


def _name_from(source: str | None) -> str:
    """A service name from the spec file's name: ``Ünï spec.yaml`` -> ``Uni-spec``."""
    if not source:
        return "service"
    ascii_stem = unicodedata.normalize("NFKD", Path(source).stem).encode("ascii", "ignore")
    stem = re.sub(r"[^a-zA-Z0-9-]+", "-", ascii_stem.decode()).strip("-") or "service"
    if not stem[0].isalpha():
        stem = "s-" + stem
    return stem[:63].rstrip("-")
