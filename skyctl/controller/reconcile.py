"""One service's tick: observe -> decide -> act.

- observe: the store's replicas, the provider's instance list, probe results;
  provider facts (preempted, vanished, endpoint, notice) and probe results
  become life-cycle transitions right here, each through the store (which
  checks them against ``skyctl.lifecycle``).
- decide: ``policies.reconcile.plan(observation, now)``; pure.
- act: every provider call has its intent recorded before (PENDING /
  SHUTTING_DOWN with the client token) and its outcome after, so a controller
  killed at any point resumes: a PROVISIONING replica is launched again with
  the same token (providers are idempotent on it), a SHUTTING_DOWN one is
  terminated again (not found counts as done).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from policies.model import (
    LocationEvent,
    LocationEventKind,
    LocationState,
    ReplicaView,
    ServiceObservation,
    Terminate,
)
from policies.reconcile import plan as make_plan
from policies.registry import policy_for
from policies.routable import routable
from providers.registry import ProviderSet, canonical
from skyctl.clock import Clock
from skyctl.controller import failure_facts
from skyctl.controller.breaker import Breakers
from skyctl.controller.launcher import Launcher
from skyctl.controller.prober import Target
from skyctl.controller.runtime import ServiceRuntime
from skyctl.errors import (
    ProviderError,
    TransientError,
)
from skyctl.lifecycle import FAILURES, EndReason, ReplicaStatus
from skyctl.secrets import Secrets
from skyctl.spec import ServiceSpec
from skyctl.store import ReplicaRecord, ServiceRecord, ServiceStatus, Store
from skyctl.types import Backend, Instance, InstanceState, Offering

log = logging.getLogger(__name__)
S = ReplicaStatus

#: terminated replica rows are kept this long for `serve status` history
KEEP_TERMINATED_SECONDS = 3600.0
#: longest wait for a terminated replica's in-flight requests before its instance goes
DRAIN_SECONDS = 30.0


@dataclass
class Reconciler:
    store: Store
    providers: ProviderSet
    clock: Clock
    secrets: Secrets  # opens the stored specs' secrets
    launcher: Launcher = field(init=False)

    def __post_init__(self) -> None:
        self.launcher = Launcher(self.store, self.providers, self.clock, self.secrets)

    @property
    def breakers(self) -> Breakers:
        return self.launcher.breakers

    # ------------------------------------------------------------------ tick
    async def tick(self, rt: ServiceRuntime, svc: ServiceRecord) -> bool:
        """Reconcile one service once. Returns True when the service is gone."""
        name = svc.name
        version = self.store.get_version(name, svc.current_version)
        spec = rt.spec(version, self.secrets)
        replicas = self.store.list_replicas(name)
        instances = await self._instances(name, spec, replicas)
        replicas = await self._sync(rt, replicas, instances)
        replicas = self._apply_probes(rt, replicas)
        if any(r.status in (S.PENDING, S.PROVISIONING) for r in replicas):
            # launches a previous run recorded but did not finish: settle them
            # (same client token, so no duplicate) before deciding anything new
            await asyncio.gather(
                *(
                    self.launcher.launch_one(rt, r)
                    for r in replicas
                    if r.status in (S.PENDING, S.PROVISIONING)
                )
            )
            replicas = self.store.list_replicas(name)
        if any(r.status is S.SHUTTING_DOWN for r in replicas):
            # terminations a previous run (or a failed call) left unfinished: the
            # policy never terminates a SHUTTING_DOWN replica again, so settle them
            # here (not found counts as done)
            await asyncio.gather(
                *(
                    self._finish_terminate(rt, r)
                    for r in replicas
                    if r.status is S.SHUTTING_DOWN and not self._draining(rt, r)
                )
            )
            replicas = self.store.list_replicas(name)

        if svc.status is ServiceStatus.SHUTTING_DOWN:
            await self._act_terminations(
                rt, [Terminate(r.replica_id, EndReason.USER) for r in replicas if r.is_live]
            )
            self._publish(rt, [])
            if not [r for r in self.store.list_replicas(name) if r.is_live]:
                return await self._finish_down(name, spec)
            return False

        offerings = await self._offerings(spec)
        obs = ServiceObservation(
            service=name,
            version=svc.current_version,
            spec=spec,
            replicas=tuple(_view(r, rt.gone) for r in replicas if r.is_live),
            offerings=tuple(offerings),
            location_states={
                loc: LocationState(state) for loc, state in self.store.location_states(name).items()
            },
            events=tuple(rt.events),
            qps=rt.router.request_rate(60.0),
            policy_state=self.store.policy_state(name),
            ended=tuple(rt.ended),
            closed_locations=frozenset(self.launcher.breakers.open_locations()),
        )
        rt.events.clear()
        rt.ended.clear()
        now = self.clock.now()
        plan = make_plan(obs, now)
        with self.store.transaction():
            self.store.set_location_states(
                name, {loc: str(st) for loc, st in plan.location_states.items()}, now=now
            )
            self.store.set_policy_state(name, dict(plan.policy_state))
            for note in plan.notes:
                self.store.add_event(name, "plan", note, now=now)
        rt.plan_summary = {
            "policy": policy_for(spec),
            "target": plan.target,
            "spot_target": plan.spot_target,
            "ondemand_target": plan.ondemand_target,
        }
        await self._act_terminations(rt, list(plan.terminations))
        await self.launcher.launch_all(rt, spec, list(plan.launches))
        live = [r for r in self.store.list_replicas(name) if r.is_live]
        self._publish(rt, live)
        self._set_status(svc, live, plan.failure)
        self.store.purge_terminated(name, before=now - KEEP_TERMINATED_SECONDS)
        return False

    # --------------------------------------------------------------- observe
    async def _instances(
        self, name: str, spec: ServiceSpec, replicas: Sequence[ReplicaRecord]
    ) -> dict[str, dict[int, Instance]]:
        """Instances per cloud; a cloud whose listing failed is absent (unknown this tick)."""
        clouds = {canonical(c.cloud) for c in spec.resources.candidates}
        clouds |= {canonical(r.location.cloud) for r in replicas}
        out: dict[str, dict[int, Instance]] = {}
        for cloud in sorted(clouds):
            try:
                listed = await self.providers.get(cloud).list_instances(name)
            except (TransientError, ProviderError) as e:
                log.warning("%s: listing %s instances failed: %s", name, cloud, e)
                continue
            out[cloud] = {i.replica_id: i for i in listed}
        return out

    async def _offerings(self, spec: ServiceSpec) -> list[Offering]:
        out: list[Offering] = []
        for cloud in sorted({canonical(c.cloud) for c in spec.resources.candidates}):
            try:
                out.extend(await self.providers.get(cloud).offerings(spec))
            except (TransientError, ProviderError) as e:
                log.warning("offerings from %s failed: %s", cloud, e)
        return out

    async def _sync(
        self,
        rt: ServiceRuntime,
        replicas: list[ReplicaRecord],
        instances: dict[str, dict[int, Instance]],
    ) -> list[ReplicaRecord]:
        """Provider facts -> transitions. Returns the replicas as updated."""
        name = rt.name
        known_ids = {r.replica_id for r in replicas if r.is_live}
        out: list[ReplicaRecord] = []
        for r in replicas:
            cloud = canonical(r.location.cloud)
            if cloud not in instances:  # unknown this tick
                out.append(r)
                continue
            inst = instances[cloud].get(r.replica_id)
            out.append(await self._sync_one(rt, r, inst))
        # instances of this service that no live replica owns: orphans
        for cloud, by_id in instances.items():
            for rid, inst in by_id.items():
                if rid not in known_ids:
                    await self._terminate_instance(name, cloud, inst.instance_id)
                    self.store.add_event(
                        name,
                        "orphan",
                        f"terminated unknown instance {inst.instance_id}",
                        now=self.clock.now(),
                        replica_id=rid,
                    )
        return out

    async def _sync_one(
        self, rt: ServiceRuntime, r: ReplicaRecord, inst: Instance | None
    ) -> ReplicaRecord:
        name, now = rt.name, self.clock.now()
        if r.status in (S.PENDING, S.PROVISIONING):
            if inst is not None and inst.state in (InstanceState.PENDING, InstanceState.RUNNING):
                # the launch went through before a restart: adopt it
                if r.status is S.PENDING:
                    r = self.store.update_replica(
                        name, r.replica_id, now=now, status=S.PROVISIONING
                    )
                return self.launcher.started(rt, r, inst)
            return r  # relaunched (same token) in _resume_launches
        if r.status is S.SHUTTING_DOWN:
            return r
        if r.status not in (S.STARTING, S.READY, S.NOT_READY):
            return r
        if inst is None or inst.state is InstanceState.PREEMPTED:
            # a spot instance that vanished was taken by the cloud (GCP and Azure
            # delete preempted spot VMs); an on-demand one that vanished failed
            reason = EndReason.PREEMPTED if r.spot else EndReason.FAILED
            return await self._end(rt, r, reason, "instance preempted" if inst else "instance gone")
        if inst.state in (InstanceState.TERMINATED, InstanceState.FAILED):
            return await self._end(rt, r, EndReason.FAILED, inst.detail or f"instance {inst.state}")
        changes: dict[str, Any] = {}
        if inst.endpoint and inst.endpoint != r.endpoint:
            changes["endpoint"] = inst.endpoint
        if inst.interruption_at is not None and inst.interruption_at != r.interruption_at:
            changes["interruption_at"] = inst.interruption_at
            self._note_notice(rt, r)
        if changes:
            r = self.store.update_replica(name, r.replica_id, now=now, **changes)
        return r

    def _note_notice(self, rt: ServiceRuntime, r: ReplicaRecord) -> None:
        if r.replica_id in rt.noticed:
            return
        rt.noticed.add(r.replica_id)
        rt.events.append(
            LocationEvent(LocationEventKind.NOTICE, r.location, self.clock.now(), r.spot)
        )
        self.store.add_event(
            rt.name, "notice", "interruption notice", now=self.clock.now(), replica_id=r.replica_id
        )

    async def _end(
        self, rt: ServiceRuntime, r: ReplicaRecord, reason: EndReason, detail: str
    ) -> ReplicaRecord:
        """The instance is gone or going: record, clean up, TERMINATED."""
        extra: dict[str, Any] = {}
        if reason in FAILURES:  # how it failed: exit code, log tail (read off the loop)
            facts = await failure_facts.gather(self.providers, r, reason, detail)
            reason, extra = facts.reason, facts.fields()
            rt.ended.append(facts.ended(r, self.clock.now()))
        now = self.clock.now()
        if reason is EndReason.PREEMPTED:
            rt.events.append(LocationEvent(LocationEventKind.PREEMPTED, r.location, now, r.spot))
        r = self.store.update_replica(
            rt.name, r.replica_id, now=now, status=S.SHUTTING_DOWN, reason=reason, **extra
        )
        self.store.add_event(
            rt.name, reason.value.lower(), detail, now=now, replica_id=r.replica_id
        )
        self._unroute(rt, r.replica_id)
        return await self._finish_terminate(rt, r)

    def _apply_probes(
        self, rt: ServiceRuntime, replicas: list[ReplicaRecord]
    ) -> list[ReplicaRecord]:
        out = []
        now = self.clock.now()
        for r in replicas:
            res = rt.prober.results.get(r.replica_id)
            if res is None or res.ok is None or r.status not in (S.STARTING, S.READY, S.NOT_READY):
                out.append(r)
                continue
            if res.ok and r.status in (S.STARTING, S.NOT_READY):
                r = self.store.update_replica(
                    rt.name, r.replica_id, now=now, status=S.READY, probe_failures=0
                )
                self.store.add_event(
                    rt.name, "ready", f"ready at {r.endpoint}", now=now, replica_id=r.replica_id
                )
            elif not res.ok and r.status in (S.READY, S.NOT_READY):
                fields: dict[str, Any] = {"probe_failures": res.consecutive_failures}
                if r.status is S.READY:
                    fields["status"] = S.NOT_READY
                    self.store.add_event(
                        rt.name,
                        "not_ready",
                        f"probe failed: {res.detail}",
                        now=now,
                        replica_id=r.replica_id,
                    )
                r = self.store.update_replica(rt.name, r.replica_id, now=now, **fields)
            out.append(r)
        return out

    # ------------------------------------------------------------------- act
    async def _act_terminations(self, rt: ServiceRuntime, terms: list[Terminate]) -> None:
        if not terms:
            return
        todo: list[ReplicaRecord] = []
        for t in terms:
            r = self.store.get_replica(rt.name, t.replica_id)
            if r is None or not r.is_live:
                continue
            if r.status is not S.SHUTTING_DOWN:
                extra: dict[str, Any] = {}
                if t.reason in FAILURES:  # the plan counted it; keep its log tail for status
                    facts = await failure_facts.gather(self.providers, r, t.reason, t.detail)
                    extra = facts.fields()
                now = self.clock.now()
                r = self.store.update_replica(
                    rt.name, r.replica_id, now=now, status=S.SHUTTING_DOWN, reason=t.reason, **extra
                )
                self.store.add_event(
                    rt.name,
                    "terminate",
                    f"{t.reason}: {t.detail}".rstrip(": "),
                    now=now,
                    replica_id=r.replica_id,
                )
            self._unroute(rt, r.replica_id)
            todo.append(r)
        await asyncio.gather(
            *(self._finish_terminate(rt, r) for r in todo if not self._draining(rt, r))
        )

    def _draining(self, rt: ServiceRuntime, r: ReplicaRecord) -> bool:
        """True while the router still has requests in flight to ``r`` (bounded by
        DRAIN_SECONDS): its termination waits for a later tick, so a scale-down or
        an update does not cut requests (a cut POST may be retried elsewhere)."""
        in_flight = rt.router.replica_stats().get(r.replica_id, {}).get("in_flight", 0)
        return in_flight > 0 and self.clock.now() - r.status_since < DRAIN_SECONDS

    async def _finish_terminate(self, rt: ServiceRuntime, r: ReplicaRecord) -> ReplicaRecord:
        if r.instance_id:
            try:
                await self._terminate_instance(rt.name, canonical(r.location.cloud), r.instance_id)
            except (TransientError, ProviderError) as e:
                self.store.add_event(
                    rt.name,
                    "terminate_retry",
                    str(e),
                    now=self.clock.now(),
                    replica_id=r.replica_id,
                )
                return r  # still SHUTTING_DOWN; the next tick tries again
        r = self.store.update_replica(
            rt.name, r.replica_id, now=self.clock.now(), status=S.TERMINATED
        )
        rt.prober.forget(r.replica_id)
        rt.gone.discard(r.replica_id)  # bounded: only live replicas are remembered
        rt.noticed.discard(r.replica_id)
        return r

    async def _terminate_instance(self, service: str, cloud: str, instance_id: str) -> None:
        await self.providers.get(cloud).terminate(instance_id)

    # --------------------------------------------------------------- publish
    def _publish(self, rt: ServiceRuntime, live: list[ReplicaRecord]) -> None:
        """Routing table and probe targets from the replicas' statuses, at once."""
        rt.prober.set_targets(
            [
                Target(r.replica_id, r.endpoint)
                for r in live
                if r.endpoint and r.status in (S.STARTING, S.READY, S.NOT_READY)
            ]
        )
        # the one routing decision (policies.routable), as plan() computes Plan.routable
        chosen = set(routable(_view(r, rt.gone) for r in live if r.endpoint))
        rt.set_backends([_backend(r) for r in live if r.replica_id in chosen])

    def _unroute(self, rt: ServiceRuntime, replica_id: int) -> None:
        rt.gone.add(replica_id)
        rt.set_backends([b for b in rt.backends if b.replica_id != replica_id])

    def _set_status(self, svc: ServiceRecord, live: list[ReplicaRecord], failure: str) -> None:
        if any(r.status is S.READY for r in live):
            status = ServiceStatus.READY
        elif failure:  # plan gave the current version up (policies.failures)
            status = ServiceStatus.FAILED
        elif any(r.status in (S.PENDING, S.PROVISIONING, S.STARTING) for r in live):
            status = ServiceStatus.REPLICA_INIT
        else:
            status = ServiceStatus.NO_REPLICA
        # `svc` was read when the tick began: a `serve down` that arrived during
        # the tick's awaits must not be overwritten (the deletion would be lost)
        current = self.store.get_service(svc.name)
        if current is None or current.status is ServiceStatus.SHUTTING_DOWN:
            return
        if status is not current.status:
            self.store.update_service(svc.name, now=self.clock.now(), status=status)

    async def _finish_down(self, name: str, spec: ServiceSpec) -> bool:
        """Everything terminated: verify by listing, then forget the service."""
        clouds = {canonical(c.cloud) for c in spec.resources.candidates}
        for cloud in clouds:
            try:
                left = await self.providers.get(cloud).list_instances(name)
            except (TransientError, ProviderError):
                return False
            for inst in left:
                await self._terminate_instance(name, cloud, inst.instance_id)
            if left:
                return False
        for cloud in clouds:
            await self.providers.get(cloud).release_service(name)
        self.store.delete_service(name)
        return True


def _view(r: ReplicaRecord, gone: set[int] | frozenset[int] = frozenset()) -> ReplicaView:
    return ReplicaView(
        replica_id=r.replica_id,
        version=r.version,
        status=r.status,
        location=r.location,
        spot=r.spot,
        price=r.price,
        created_at=r.created_at,
        status_since=r.status_since,
        ready_at=r.ready_at,
        probe_failures=r.probe_failures,
        interruption_at=r.interruption_at,
        unreachable=r.replica_id in gone,
    )


def _backend(r: ReplicaRecord) -> Backend:
    assert r.endpoint is not None
    return Backend(
        replica_id=r.replica_id,
        url=r.endpoint,
        location=r.location,
        spot=r.spot,
        accelerators="",
        version=r.version,
    )
