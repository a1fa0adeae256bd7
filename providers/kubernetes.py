"""Replicas as pods on spot and on-demand node pools of one or more Kubernetes clusters.

Each kubeconfig context is a location ``kubernetes/<context>``, so spot
placement spreads replicas across clusters as it does across zones. The
provider decides nothing: it reports offerings (prices from the config; the
Kubernetes API has none) and carries out launches and terminations through the
official client (:mod:`providers.kubernetes_api`).

- Launch: a pod with a deterministic name from service, replica and client
  token (AlreadyExists is success), labels ``skyctl-service/-replica/-version``,
  spot or on-demand node selection from the capacity preset
  (:mod:`providers.kubernetes_config`), the body from
  :mod:`providers.kubernetes_build`. Outside the cluster each replica also gets
  a Service (type from config) owned by its pod; inside, the pod IP is used.
- Preemption: one watch of our pods per context (resourceVersion, a new list
  on 410 Gone), in a thread; a pod evicted, deleted by the cluster, or marked
  with a ``DisruptionTarget`` condition is reported PREEMPTED and pushed once.
- Unschedulable: a pod the scheduler cannot place for
  ``unschedulable_timeout_seconds`` is deleted and reported PREEMPTED; its pool
  (context + spot/on-demand) answers launches with CapacityError for
  ``capacity_cooldown_seconds``, so placement moves on.

See docs/kubernetes.md for the user's side.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from providers.base import LaunchRequest, Provider
from providers.kubernetes_api import (
    REQUEST_TIMEOUT,
    AlreadyExists,
    Discovery,
    Gone,
    KubeApi,
    WatchHandle,
    discover,
    in_cluster,
)
from providers.kubernetes_build import (
    LABEL_SERVICE,
    PodView,
    instance_id,
    label_value,
    node_address,
    pod_body,
    pod_name,
    service_body,
    service_endpoint,
    split_instance_id,
    view_pod,
)
from providers.kubernetes_config import KubeConfig, parse_config
from skyctl.clock import Clock
from skyctl.errors import CapacityError, ConfigError, NotFoundError, SkyctlError
from skyctl.spec import ResourceCandidate, ServiceSpec
from skyctl.types import (
    Instance,
    InstanceEvent,
    InstanceEventKind,
    InstanceState,
    Location,
    Offering,
)

__all__ = ["KubernetesProvider", "check"]

log = logging.getLogger("skyctl.providers.kubernetes")

WATCH_TIMEOUT = 300  # seconds a watch session lasts before it is resumed
GONE_RETENTION_SECONDS = 3600.0  # how long a pod the cluster removed stays listed PREEMPTED
NODE_CACHE_SECONDS = 300.0
SWEEP_SECONDS = 1.0


def _is_kubernetes(candidate: ResourceCandidate) -> bool:
    return (candidate.cloud or "").lower() in ("kubernetes", "k8s")


def _accelerators(candidate: ResourceCandidate) -> tuple[str, int]:
    accels = candidate.accelerators or {}
    text = ",".join(f"{name}:{count}" for name, count in sorted(accels.items()))
    return text, sum(accels.values())


def _method(name: str, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
    """``core.<name>(*args, **kwargs)`` as a function of the CoreV1Api, for KubeApi.call."""
    kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)

    def run(core: Any) -> Any:
        return getattr(core, name)(*args, **kwargs)

    return run


def check(config: Mapping[str, Any]) -> tuple[bool, str]:
    """For ``skyctl check``: is a kubeconfig or an in-cluster account found (no secrets shown)."""
    try:
        cfg = parse_config(config)
        found = discover(cfg)
    except ConfigError as e:
        return False, str(e)
    wanted = [c.name for c in cfg.contexts] or ([found.current] if found.current else [])
    if not wanted:
        return False, "kubernetes: the kubeconfig has no current context; set kubernetes.contexts"
    missing = [c for c in wanted if c not in found.contexts]
    if missing:
        return False, f"kubernetes.contexts: {missing[0]!r} is not in the kubeconfig"
    where = "in-cluster service account" if found.config_file is None else found.config_file
    return True, f"{where}: contexts {', '.join(wanted)}; capacity preset {cfg.preset}"


class KubernetesProvider(Provider):
    """Pods in the configured kubeconfig contexts (see the module docstring)."""

    name = "kubernetes"

    def __init__(self, config: Mapping[str, Any], *, clock: Clock) -> None:
        self._cfg: KubeConfig = parse_config(config)
        self._clock = clock
        self._api = KubeApi(self._cfg, clock=clock)
        self._used: set[str] = set()  # contexts named by specs or launched in
        self._watches: dict[str, asyncio.Task[None]] = {}
        self._handles: dict[str, WatchHandle] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._pods: dict[str, dict[str, dict[str, Any]]] = {}  # context -> name -> pod (watched)
        self._gone: dict[str, tuple[float, Instance]] = {}  # removed by the cluster
        self._deleting: set[str] = set()  # instance ids we asked to delete
        self._emitted: set[tuple[str, InstanceEventKind]] = set()
        self._unschedulable_since: dict[str, float] = {}
        self._exhausted: dict[tuple[str, bool], float] = {}  # (context, spot) -> until
        self._nodes: dict[tuple[str, str], tuple[float, str | None]] = {}
        self._closed = False

    # ------------------------------------------------------------- contexts

    async def _discovery(self) -> Discovery:
        return await self._api.discovery()

    async def _allowed(self) -> list[str]:
        found = await self._discovery()
        if self._cfg.contexts:
            return [c.name for c in self._cfg.contexts]
        if found.current is None:
            raise ConfigError(
                "kubernetes: the kubeconfig has no current context; set kubernetes.contexts"
            )
        return [found.current]

    async def _contexts(self) -> list[str]:
        return sorted(set(await self._allowed()) | self._used)

    async def _namespace(self, context: str) -> str:
        found = await self._discovery()
        return (
            self._cfg.context(context).namespace
            or self._cfg.namespace
            or found.namespaces.get(context)
            or "default"
        )

    async def _service_mode(self) -> bool:
        if self._cfg.endpoint_mode is not None:
            return self._cfg.endpoint_mode == "service"
        found = await self._discovery()
        return not (found.config_file is None or in_cluster())

    # ------------------------------------------------------------ offerings

    async def offerings(self, spec: ServiceSpec) -> Sequence[Offering]:
        found = await self._discovery()
        allowed = await self._allowed()
        out: dict[tuple[Location, bool, str], Offering] = {}
        for cand in spec.resources.candidates:
            if not _is_kubernetes(cand) or cand.zone:
                continue
            contexts = [cand.region] if cand.region else allowed
            accel, gpus = _accelerators(cand)
            for ctx in contexts:
                if ctx not in allowed and ctx not in found.contexts:
                    log.warning(
                        "kubernetes: context %r named by the spec is not in the kubeconfig", ctx
                    )
                    continue
                self._used.add(ctx)
                prices = self._cfg.context(ctx)
                loc = Location("kubernetes", ctx, "")
                for spot in (True, False) if spec.use_spot else (False,):
                    if spot and self._cfg.spot is None:
                        continue
                    price = (prices.spot_price if spot else prices.ondemand_price) * max(1, gpus)
                    out[(loc, spot, accel)] = Offering(loc, spot, price, "", accel)
        return sorted(out.values(), key=lambda o: (o.price, str(o.location), o.accelerators))

    # --------------------------------------------------------------- launch

    async def launch(self, request: LaunchRequest) -> Instance:
        off = request.offering
        ctx = off.location.region
        if off.location.cloud != "kubernetes" or not ctx:
            raise ConfigError(f"kubernetes: cannot launch at {off.location}")
        until = self._exhausted.get((ctx, off.spot), 0.0)
        if self._clock.now() < until:
            kind = "spot" if off.spot else "on-demand"
            raise CapacityError(
                f"kubernetes/{ctx}: no {kind} capacity (pods stayed unschedulable); "
                f"retry after {until - self._clock.now():.0f}s",
                location=str(off.location),
            )
        self._used.add(ctx)
        ns = await self._namespace(ctx)
        name = pod_name(request.service, request.replica_id, request.client_token)
        body = pod_body(
            request,
            self._cfg,
            name=name,
            namespace=ns,
            candidate=self._candidate(request.spec, off),
        )
        self._ensure_watch(ctx)
        try:
            pod = await self._api.call(
                ctx,
                f"create pod {name}",
                _method("create_namespaced_pod", ns, body),
            )
        except AlreadyExists:
            pod = await self._api.call(
                ctx,
                f"read pod {name}",
                _method("read_namespaced_pod", name, ns),
            )
        except NotFoundError as e:
            raise ConfigError(
                f"kubernetes/{ctx}: namespace {ns!r} not found; create it or set "
                "kubernetes.namespace"
            ) from e
        pod_dict = self._api.to_dict(pod)
        svc = None
        if await self._service_mode():
            svc = await self._create_service(ctx, pod_dict, request.port)
        iid = instance_id(ctx, ns, name)
        self._gone.pop(iid, None)
        view = view_pod(pod_dict)
        self._pods.setdefault(ctx, {}).setdefault(name, pod_dict)  # until the watch reports it
        self._track_pending(iid, view)
        state, detail = self._state(iid, view)
        return self._instance(ctx, view, state, detail, await self._endpoint(ctx, view, svc))

    def _candidate(self, spec: ServiceSpec, off: Offering) -> ResourceCandidate | None:
        for cand in spec.resources.candidates:
            if (
                _is_kubernetes(cand)
                and cand.region in (None, off.location.region)
                and (_accelerators(cand)[0] == off.accelerators)
            ):
                return cand
        return None

    async def _create_service(self, ctx: str, pod: dict[str, Any], port: int) -> dict[str, Any]:
        body = service_body(pod, self._cfg.service_type, port)
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            svc = await self._api.call(
                ctx,
                f"create service {name}",
                _method("create_namespaced_service", ns, body),
            )
        except AlreadyExists:
            svc = await self._api.call(
                ctx,
                f"read service {name}",
                _method("read_namespaced_service", name, ns),
            )
        return dict(self._api.to_dict(svc))

    # ------------------------------------------------------------ terminate

    async def terminate(self, instance_id: str) -> None:
        try:
            ctx, ns, name = split_instance_id(instance_id)
        except ValueError:
            return  # not ours: nothing to delete
        self._deleting.add(instance_id)
        self._gone.pop(instance_id, None)
        self._unschedulable_since.pop(instance_id, None)
        kinds = ["pod", "service"] if await self._service_mode() else ["pod"]
        for kind in kinds:
            method = f"delete_namespaced_{kind}"
            try:
                await self._api.call(
                    ctx,
                    f"delete {kind} {name}",
                    _method(method, name, ns),
                )
            except NotFoundError:
                pass

    # ---------------------------------------------------------------- lists

    async def _list(self, ctx: str, plural: str, selector: str) -> tuple[list[dict[str, Any]], str]:
        ns = await self._namespace(ctx)
        method = "list_namespaced_pod" if plural == "pods" else "list_namespaced_service"
        result = await self._api.call(
            ctx,
            f"list {plural}",
            _method(method, ns, label_selector=selector),
        )
        data = self._api.to_dict(result)
        return list(data.get("items") or []), str(
            (data.get("metadata") or {}).get("resourceVersion") or ""
        )

    async def list_instances(self, service: str) -> Sequence[Instance]:
        selector = f"{LABEL_SERVICE}={label_value(service)}"
        service_mode = await self._service_mode()
        out: list[Instance] = []
        for ctx in await self._contexts():
            pods, _ = await self._list(ctx, "pods", selector)
            self._ensure_watch(ctx)
            svcs: dict[str, dict[str, Any]] = {}
            if service_mode:
                found, _ = await self._list(ctx, "services", selector)
                svcs = {s["metadata"]["name"]: s for s in found}
            for pod in pods:
                view = view_pod(pod)
                if view.service != service:
                    continue  # a label-value collision of two long names
                iid = instance_id(ctx, view.namespace, view.name)
                if await self._expire_if_unschedulable(ctx, view):
                    continue
                state, detail = self._state(iid, view)
                endpoint = await self._endpoint(ctx, view, svcs.get(view.name))
                out.append(self._instance(ctx, view, state, detail, endpoint))
        listed = {i.instance_id for i in out}
        now = self._clock.now()
        for iid, (when, inst) in list(self._gone.items()):
            if now - when > GONE_RETENTION_SECONDS:
                del self._gone[iid]
            elif inst.service == service and iid not in listed:
                out.append(inst)
        return out

    async def list_services(self) -> Sequence[str]:
        names: set[str] = set()
        for ctx in await self._contexts():
            pods, _ = await self._list(ctx, "pods", LABEL_SERVICE)
            names.update(v.service for v in map(view_pod, pods) if v.service)
        return sorted(names)

    # ----------------------------------------------------- state & endpoints

    def _state(self, iid: str, view: PodView) -> tuple[InstanceState, str]:
        if iid in self._deleting:
            return InstanceState.TERMINATED, "deleting"
        if view.deleting and view.state not in (InstanceState.FAILED, InstanceState.TERMINATED):
            return InstanceState.PREEMPTED, view.detail or "pod deleted by the cluster"
        return view.state, view.detail

    def _instance(
        self, ctx: str, view: PodView, state: InstanceState, detail: str, endpoint: str | None
    ) -> Instance:
        return Instance(
            instance_id=instance_id(ctx, view.namespace, view.name),
            service=view.service,
            replica_id=view.replica_id,
            version=view.version,
            location=Location("kubernetes", ctx, ""),
            spot=view.spot,
            state=state,
            endpoint=endpoint,
            price=view.price,
            created_at=view.created_at,
            detail=detail,
        )

    async def _endpoint(self, ctx: str, view: PodView, svc: dict[str, Any] | None) -> str | None:
        if not await self._service_mode():
            if not view.pod_ip:
                return None
            host = f"[{view.pod_ip}]" if ":" in view.pod_ip else view.pod_ip
            return f"http://{host}:{view.port}"
        address = None
        if svc and (svc.get("spec") or {}).get("type") == "NodePort" and view.node:
            address = await self._node_address(ctx, view.node)
        return service_endpoint(svc, address)

    async def _node_address(self, ctx: str, node: str) -> str | None:
        cached = self._nodes.get((ctx, node))
        if cached and cached[0] > self._clock.now():
            return cached[1]
        try:
            obj = await self._api.call(
                ctx,
                f"read node {node}",
                _method("read_node", node),
            )
            address = node_address(self._api.to_dict(obj))
        except SkyctlError as e:
            log.warning("kubernetes/%s: no address for node %s: %s", ctx, node, e)
            address = None
        self._nodes[(ctx, node)] = (self._clock.now() + NODE_CACHE_SECONDS, address)
        return address

    # ---------------------------------------------------------- preemption

    def _emit_once(self, kind: InstanceEventKind, inst: Instance) -> None:
        if (inst.instance_id, kind) in self._emitted:
            return
        self._emitted.add((inst.instance_id, kind))
        self._emit(
            InstanceEvent(
                kind,
                inst.service,
                inst.replica_id,
                inst.instance_id,
                inst.location,
                self._clock.now(),
                inst.detail,
            )
        )

    def _on_event(self, ctx: str, kind: str, pod: dict[str, Any]) -> None:
        """A watch event (in the event loop): update the cache, push preemptions."""
        if self._closed:
            return
        view = view_pod(pod)
        iid = instance_id(ctx, view.namespace, view.name)
        cache = self._pods.setdefault(ctx, {})
        if kind == "DELETED":
            cache.pop(view.name, None)
            self._unschedulable_since.pop(iid, None)
            if iid in self._deleting:
                self._deleting.discard(iid)
                return
            state, detail = self._state(iid, view)
            if state not in (InstanceState.FAILED, InstanceState.TERMINATED):
                state = InstanceState.PREEMPTED
                detail = view.detail or "pod deleted by the cluster"
            inst = self._instance(ctx, view, state, detail, None)
            self._gone[iid] = (self._clock.now(), inst)
            self._push(inst)
            return
        cache[view.name] = pod
        if iid in self._deleting:
            return
        self._track_pending(iid, view)
        state, detail = self._state(iid, view)
        self._push(self._instance(ctx, view, state, detail, None))

    def _deliver(
        self, loop: asyncio.AbstractEventLoop, ctx: str, kind: str, pod: dict[str, Any]
    ) -> None:
        """Called in the watch thread: hand the event to the event loop."""
        loop.call_soon_threadsafe(self._on_event, ctx, kind, pod)

    def _push(self, inst: Instance) -> None:
        if inst.state is InstanceState.PREEMPTED:
            self._emit_once(InstanceEventKind.PREEMPTED, inst)
        elif inst.state in (InstanceState.FAILED, InstanceState.TERMINATED):
            self._emit_once(InstanceEventKind.EXITED, inst)

    def _track_pending(self, iid: str, view: PodView) -> None:
        """The unschedulable wait starts when a pod is first seen without a node."""
        if view.phase == "Pending" and not view.node and not view.deleting:
            self._unschedulable_since.setdefault(iid, self._clock.now())
        else:
            self._unschedulable_since.pop(iid, None)

    async def _expire_if_unschedulable(self, ctx: str, view: PodView) -> bool:
        """Delete a pod unschedulable for longer than the timeout; True if it was."""
        iid = instance_id(ctx, view.namespace, view.name)
        self._track_pending(iid, view)
        if not view.unschedulable or view.deleting or iid in self._deleting:
            return False
        now = self._clock.now()
        waited = now - self._unschedulable_since.get(iid, now)
        if waited < self._cfg.unschedulable_timeout:
            return False
        self._exhausted[(ctx, view.spot)] = now + self._cfg.capacity_cooldown
        detail = f"unschedulable for {waited:.0f}s: {view.unschedulable}"
        inst = self._instance(ctx, view, InstanceState.PREEMPTED, detail, None)
        log.info("kubernetes/%s: %s %s", ctx, view.name, detail)
        await self.terminate(iid)
        self._gone[iid] = (now, inst)
        self._push(inst)
        return True

    def _ensure_watch(self, ctx: str) -> None:
        if self._closed:
            return
        task = self._watches.get(ctx)
        if task is None or task.done():
            self._watches[ctx] = asyncio.create_task(self._watch_loop(ctx), name=f"k8s-watch-{ctx}")
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep_loop(), name="k8s-unschedulable")

    async def _watch_loop(self, ctx: str) -> None:
        loop = asyncio.get_running_loop()
        rv: str | None = None
        delay = 1.0
        empty = 0  # consecutive watch sessions that brought nothing
        while not self._closed:
            try:
                ns = await self._namespace(ctx)
                if rv is None:
                    pods, rv = await self._list(ctx, "pods", LABEL_SERVICE)
                    self._resync(ctx, pods)
                handle = WatchHandle()
                self._handles[ctx] = handle
                rv = await self._api.watch_pods(
                    ctx,
                    ns,
                    LABEL_SERVICE,
                    rv,
                    functools.partial(self._deliver, loop, ctx),
                    handle,
                    WATCH_TIMEOUT,
                )
                delay = 1.0
                empty = 0 if handle.events else empty + 1
                if empty >= 3:  # a server that keeps ending watches at once: do not spin
                    await self._clock.sleep(1.0)
            except Gone:
                rv = None
            except SkyctlError as e:
                log.warning("kubernetes/%s: pod watch failed: %s; retrying in %.0fs", ctx, e, delay)
                rv = None
                await self._clock.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _resync(self, ctx: str, pods: list[dict[str, Any]]) -> None:
        """A fresh list replaces the cache; pods missing from it were deleted."""
        fresh = {str(p["metadata"]["name"]): p for p in pods}
        for name, old in list(self._pods.get(ctx, {}).items()):
            if name not in fresh:
                self._on_event(ctx, "DELETED", old)
        self._pods[ctx] = {}
        for pod in fresh.values():
            self._on_event(ctx, "MODIFIED", pod)

    async def _sweep_loop(self) -> None:
        while not self._closed:
            await self._clock.sleep(SWEEP_SECONDS)
            for ctx, pods in list(self._pods.items()):
                for pod in list(pods.values()):
                    try:
                        await self._expire_if_unschedulable(ctx, view_pod(pod))
                    except SkyctlError as e:
                        log.warning("kubernetes/%s: %s", ctx, e)

    # ---------------------------------------------------------------- close

    async def close(self) -> None:
        self._closed = True
        for handle in self._handles.values():
            handle.stop()
        tasks = [*self._watches.values(), *([self._sweeper] if self._sweeper else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._watches.clear()
        self._sweeper = None
        await self._api.close()
