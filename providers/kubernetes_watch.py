"""What the Kubernetes provider learns between calls: a watch of our pods per
context, preemptions pushed once, pods the cluster removed, unschedulable waits.

:class:`PodTracker` runs one asyncio task per context that lists our pods
(``skyctl-service`` label), then watches from that resourceVersion (the
blocking stream runs in a thread, events come back through
``call_soon_threadsafe``), resumes after each session and lists again on 410
Gone; a pod missing from a fresh list was deleted while nobody watched. A
second task (on the injected clock) gives up pods the scheduler cannot place
for ``unschedulable_timeout_seconds`` and marks their pool exhausted.

A pod is reported PREEMPTED when the cluster took it: a ``DisruptionTarget``
condition (eviction, node drain or spot reclaim), a failure reason such as
``Evicted`` or ``Shutdown``, a deletion we did not ask for, or the
unschedulable give-up. Each instance's event is pushed once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from providers.events import EventsOnce
from providers.kubernetes_api import Gone, KubeApi, WatchHandle
from providers.kubernetes_build import (
    LABEL_SERVICE,
    PodView,
    instance_id,
    split_instance_id,
    view_pod,
)
from providers.kubernetes_config import KubeConfig
from providers.kubernetes_nodes import node_of
from providers.nodes import Node
from skyctl.clock import Clock
from skyctl.errors import SkyctlError
from skyctl.types import Instance, InstanceEvent, InstanceEventKind, InstanceState, Location

__all__ = ["PodTracker"]

log = logging.getLogger("skyctl.providers.kubernetes")

WATCH_TIMEOUT = 300  # seconds a watch session lasts before it is resumed
GONE_RETENTION_SECONDS = 3600.0  # how long a pod the cluster removed stays listed
SWEEP_SECONDS = 1.0

ListPods = Callable[[str], Awaitable[tuple[list[dict[str, Any]], str]]]
Namespace = Callable[[str], Awaitable[str]]
Delete = Callable[[str], Awaitable[None]]


def make_instance(
    ctx: str, view: PodView, state: InstanceState, detail: str, endpoint: str | None = None
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


class PodTracker:
    """The provider's memory of pods and the watches that feed it (see the module docstring)."""

    def __init__(
        self,
        cfg: KubeConfig,
        *,
        clock: Clock,
        api: KubeApi,
        namespace: Namespace,
        list_pods: ListPods,
        delete: Delete,
        emit: Callable[[InstanceEvent], None],
    ) -> None:
        self._cfg = cfg
        self._clock = clock
        self._api = api
        self._namespace = namespace
        self._list_pods = list_pods
        self._delete = delete
        self._watches: dict[str, asyncio.Task[None]] = {}
        self._handles: dict[str, WatchHandle] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._pods: dict[str, dict[str, dict[str, Any]]] = {}  # context -> name -> pod
        self._gone: dict[str, tuple[float, Instance]] = {}  # removed by the cluster
        self._deleting: set[str] = set()  # instance ids we asked to delete
        self._deleted: set[str] = set()  # ... and saw go: later news of them is stale
        self._told = EventsOnce(emit)
        self._pending_since: dict[str, float] = {}  # first seen without a node
        self._exhausted: dict[tuple[str, bool], float] = {}  # (context, spot) -> until
        self.node_of: dict[str, Node] = {}  # pods of multi-node replicas, by instance id
        self._closed = False

    # --------------------------------------------------------------- queries

    def exhausted_until(self, ctx: str, spot: bool) -> float:
        """Until when launches into this pool should be refused (0: not exhausted)."""
        return self._exhausted.get((ctx, spot), 0.0)

    def state(self, iid: str, view: PodView) -> tuple[InstanceState, str]:
        if iid in self._deleting:
            return InstanceState.TERMINATED, "deleting"
        if view.deleting and view.state not in (InstanceState.FAILED, InstanceState.TERMINATED):
            return InstanceState.PREEMPTED, view.detail or "pod deleted by the cluster"
        return view.state, view.detail

    def gone(self, service: str, listed: set[str]) -> list[Instance]:
        """Instances of ``service`` the cluster removed (kept an hour), not in ``listed``."""
        now = self._clock.now()
        out = []
        for iid, (when, inst) in list(self._gone.items()):
            if now - when > GONE_RETENTION_SECONDS:
                del self._gone[iid]
                self.node_of.pop(iid, None)
            elif inst.service == service and iid not in listed:
                out.append(inst)
        return out

    # --------------------------------------------------------------- updates

    def launched(self, ctx: str, iid: str, pod: dict[str, Any]) -> PodView:
        """A pod we just created (or found by its name): known until the watch reports it."""
        view = view_pod(pod)
        self._node(ctx, iid, pod)
        self._gone.pop(iid, None)
        self._deleting.discard(iid)
        self._deleted.discard(iid)
        self._pods.setdefault(ctx, {}).setdefault(view.name, pod)
        self._track_pending(iid, view)
        return view

    def deleting(self, iid: str) -> None:
        """We are deleting it: its disappearance is no preemption."""
        self._deleting.add(iid)
        self._told.forget(iid)
        self._gone.pop(iid, None)
        self._pending_since.pop(iid, None)

    def forget(self, iid: str) -> None:
        """The pod is gone (a delete found nothing): drop it, and take whatever news of
        it the watch still brings (its deletion, running late) as stale."""
        ctx, _, name = split_instance_id(iid)
        self._pods.get(ctx, {}).pop(name, None)
        self._deleting.discard(iid)
        self._deleted.add(iid)  # trimmed by the next list, like every confirmed deletion
        self._gone.pop(iid, None)
        self._pending_since.pop(iid, None)
        self.node_of.pop(iid, None)

    def _node(self, ctx: str, iid: str, pod: dict[str, Any]) -> None:
        node = node_of(ctx, pod)
        if node is not None:
            self.node_of[iid] = node

    def _track_pending(self, iid: str, view: PodView) -> None:
        """The unschedulable wait starts when a pod is first seen without a node."""
        if view.phase == "Pending" and not view.node and not view.deleting:
            self._pending_since.setdefault(iid, self._clock.now())
        else:
            self._pending_since.pop(iid, None)

    def _push(self, inst: Instance) -> None:
        node = self.node_of.get(inst.instance_id)
        if node is not None:  # a node's loss is its replica's: told under the head's id
            inst = replace(inst, instance_id=node.head)
        if inst.state is InstanceState.PREEMPTED:
            kind = InstanceEventKind.PREEMPTED
        elif inst.state in (InstanceState.FAILED, InstanceState.TERMINATED):
            kind = InstanceEventKind.EXITED
        else:
            return
        self._told.push(inst, kind, self._clock.now())

    def on_event(self, ctx: str, kind: str, pod: dict[str, Any]) -> None:
        """A watch event (in the event loop): update the cache, push what the cluster did."""
        if self._closed:
            return
        view = view_pod(pod)
        iid = instance_id(ctx, view.namespace, view.name)
        if iid in self._deleted:  # we deleted it and saw it go: a late or repeated report
            if kind == "DELETED":
                self._pods.get(ctx, {}).pop(view.name, None)
            return
        self._node(ctx, iid, pod)
        cache = self._pods.setdefault(ctx, {})
        if kind != "DELETED":
            cache[view.name] = pod
            if iid not in self._deleting:
                self._track_pending(iid, view)
                self._push(make_instance(ctx, view, *self.state(iid, view)))
            return
        cache.pop(view.name, None)
        self._pending_since.pop(iid, None)
        if iid in self._deleting:
            self._deleting.discard(iid)
            self._deleted.add(iid)
            self.node_of.pop(iid, None)
            return
        state, detail = self.state(iid, view)
        if state not in (InstanceState.FAILED, InstanceState.TERMINATED):
            state, detail = InstanceState.PREEMPTED, view.detail or "pod deleted by the cluster"
        inst = make_instance(ctx, view, state, detail)
        self._gone[iid] = (self._clock.now(), inst)
        self._push(inst)

    async def expire_if_unschedulable(self, ctx: str, view: PodView) -> bool:
        """Delete a pod unschedulable for longer than the timeout; True if it was."""
        iid = instance_id(ctx, view.namespace, view.name)
        self._track_pending(iid, view)
        if not view.unschedulable or view.deleting or iid in self._deleting:
            return False
        now = self._clock.now()
        waited = now - self._pending_since.get(iid, now)
        if waited < self._cfg.unschedulable_timeout:
            return False
        self._exhausted[(ctx, view.spot)] = now + self._cfg.capacity_cooldown
        detail = f"unschedulable for {waited:.0f}s: {view.unschedulable}"
        log.info("kubernetes/%s: %s %s", ctx, view.name, detail)
        await self._delete(iid)
        inst = make_instance(ctx, view, InstanceState.PREEMPTED, detail)
        self._gone[iid] = (now, inst)
        self._push(inst)
        return True

    # --------------------------------------------------------------- watches

    def ensure_watch(self, ctx: str) -> None:
        if self._closed:
            return
        task = self._watches.get(ctx)
        if task is None or task.done():
            self._watches[ctx] = asyncio.create_task(self._watch_loop(ctx), name=f"k8s-watch-{ctx}")
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep_loop(), name="k8s-unschedulable")

    def _deliver(
        self, loop: asyncio.AbstractEventLoop, ctx: str, kind: str, pod: dict[str, Any]
    ) -> None:
        """Called in the watch thread: hand the event to the event loop."""
        loop.call_soon_threadsafe(self.on_event, ctx, kind, pod)

    async def _watch_loop(self, ctx: str) -> None:
        loop = asyncio.get_running_loop()
        rv: str | None = None
        delay = 1.0
        empty = 0  # consecutive watch sessions that brought nothing
        while not self._closed:
            try:
                ns = await self._namespace(ctx)
                if rv is None:
                    known = set(self._pods.get(ctx, {}))  # before the list: see _resync
                    pods, rv = await self._list_pods(ctx)
                    self._resync(ctx, pods, known)
                handle = WatchHandle()
                self._handles[ctx] = handle
                deliver = functools.partial(self._deliver, loop, ctx)
                rv = await self._api.watch_pods(
                    ctx, ns, LABEL_SERVICE, rv, deliver, handle, WATCH_TIMEOUT
                )
                delay = 1.0
                empty = 0 if handle.events else empty + 1
                if empty >= 3:  # a server that keeps ending watches at once: do not spin
                    await self._clock.sleep(1.0)
            except Gone:
                rv = None
            except SkyctlError as e:
                wait = max(delay, getattr(e, "retry_after", 0.0))  # the server's Retry-After
                log.warning("kubernetes/%s: pod watch failed: %s; retrying in %.0fs", ctx, e, wait)
                rv = None
                await self._clock.sleep(wait)
                delay = min(delay * 2, 30.0)

    def _resync(self, ctx: str, pods: list[dict[str, Any]], known: set[str]) -> None:
        """A fresh list replaces the cache; pods ``known`` before the list began and
        missing from it were deleted. A pod launched while the list was on its way
        may be missing from it without being gone (the watch from the list's
        resourceVersion reports it): it stays."""
        fresh = {str(p["metadata"]["name"]): p for p in pods}
        listed = {instance_id(ctx, view_pod(p).namespace, n) for n, p in fresh.items()}
        # a deletion a fresh list confirms needs no more remembering (bounded memory)
        self._deleted = {i for i in self._deleted if split_instance_id(i)[0] != ctx or i in listed}
        cache = self._pods.get(ctx, {})
        for name, old in list(cache.items()):
            if name not in fresh and name in known:
                self.on_event(ctx, "DELETED", old)
        self._pods[ctx] = {n: p for n, p in cache.items() if n not in fresh and n not in known}
        for pod in fresh.values():
            self.on_event(ctx, "MODIFIED", pod)

    async def _sweep_loop(self) -> None:
        while not self._closed:
            await self._clock.sleep(SWEEP_SECONDS)
            for ctx, pods in list(self._pods.items()):
                for pod in list(pods.values()):
                    try:
                        await self.expire_if_unschedulable(ctx, view_pod(pod))
                    except SkyctlError as e:
                        log.warning("kubernetes/%s: %s", ctx, e)

    async def close(self) -> None:
        """Stop the watches (their threads unblock) and the sweeper."""
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
