"""One service's tick: observe -> plan -> record intents -> actuate.

- observe: the provider's instance list and offerings (each under a deadline;
  a cloud that does not answer is unknown this tick), the store's replicas and
  the probe results. Provider facts (preempted, vanished, endpoint, notice) and
  probe results become life-cycle transitions (checked by the store against
  ``skyctl.lifecycle``).
- plan: ``policies.reconcile.plan(observation, now)``; pure.
- record: every transition and intent of the tick (a new replica PENDING with
  its client token, a replica SHUTTING_DOWN with its reason, placement and
  policy state) in one transaction, opened only when there is something to
  write: an unchanged service writes nothing.
- actuate: launches and terminations are handed to the
  :class:`~skyctl.controller.actuator.Actuator` as per-replica tasks; the tick
  never waits for them. Each task records its outcome and wakes the service's
  next tick. A task is started only for a replica whose intent is recorded, so
  a controller killed at any point resumes: a PROVISIONING replica is launched
  again with the same token (providers are idempotent on it), a SHUTTING_DOWN
  one is terminated again (not found counts as done).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from policies.model import (
    Cutover,
    LocationEvent,
    LocationEventKind,
    LocationState,
    Plan,
    ReplicaView,
    ServiceObservation,
    Terminate,
)
from policies.reconcile import plan as make_plan
from policies.reconcile import shutdown_terminations
from policies.registry import policy_for
from providers.registry import ProviderSet, canonical
from skyctl.clock import Clock
from skyctl.controller import failure_facts, observe, retention
from skyctl.controller.actuator import Actuator
from skyctl.controller.breaker import Breakers
from skyctl.controller.launcher import Launcher, backend_of, view_of
from skyctl.controller.prober import Target
from skyctl.controller.retention import KEEP_TERMINATED_SECONDS as KEEP_TERMINATED_SECONDS
from skyctl.controller.routing_feed import RemoteRouter
from skyctl.controller.runtime import ServiceRuntime
from skyctl.controller.terminator import Terminator
from skyctl.errors import ProviderError, TransientError
from skyctl.lifecycle import FAILURES, EndReason, ReplicaStatus
from skyctl.secrets import Secrets
from skyctl.spec import ServiceSection, ServiceSpec
from skyctl.store import ReplicaRecord, ServiceRecord, ServiceStatus, Store
from skyctl.types import Instance, InstanceState, Location, Offering

log = logging.getLogger(__name__)
S = ReplicaStatus

# a replica's termination waits this long at most for a router process to report how
# many requests it still has in flight to it, when none has reported lately
UNREPORTED_DRAIN_SECONDS = 10.0


class _Tx:
    """The tick's one transaction, begun at its first write (none if nothing changed)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._stack = contextlib.ExitStack()
        self.opened = False

    def __call__(self) -> Store:
        if not self.opened:
            self._stack.enter_context(self._store.transaction())
            self.opened = True
        return self._store

    def __enter__(self) -> _Tx:
        return self

    def __exit__(self, *exc: Any) -> bool | None:
        return self._stack.__exit__(*exc)


@dataclass
class Reconciler:
    store: Store
    providers: ProviderSet
    clock: Clock
    secrets: Secrets  # opens the stored specs' secrets
    wake: Callable[[str], None] = lambda _service: None  # a tick of that service, soon
    deadlines: dict[str, float] | None = None  # per-call deadlines (see actuator.DEADLINES)
    actuator: Actuator = field(init=False)
    launcher: Launcher = field(init=False)
    terminator: Terminator = field(init=False)
    folding: retention.LedgerFolding = field(init=False, default_factory=retention.LedgerFolding)

    def __post_init__(self) -> None:
        self.actuator = Actuator(self.clock, on_done=self._done, deadlines=self.deadlines)
        self.launcher = Launcher(
            self.store, self.providers, self.clock, self.secrets, self.actuator
        )
        self.terminator = Terminator(self.store, self.providers, self.clock, self.actuator)

    def _done(self, service: str) -> None:
        self.wake(service)

    @property
    def breakers(self) -> Breakers:
        return self.launcher.breakers

    # ------------------------------------------------------------------ tick
    async def tick(self, rt: ServiceRuntime, svc: ServiceRecord) -> bool:
        """Reconcile one service once. Returns True when the service is gone."""
        name = svc.name
        version = rt.versions.get(svc.current_version)  # a stored version never changes
        if version is None:
            version = rt.versions[svc.current_version] = self.store.get_version(
                name, svc.current_version
            )
        spec = rt.spec(version, self.secrets)
        rt.update_mode = version.update_mode
        down = svc.status is ServiceStatus.SHUTTING_DOWN
        if rt.clouds is None:  # first tick: the clouds of replicas an older spec placed
            rt.clouds = {canonical(r.location.cloud) for r in self.store.list_replicas(name)}
        clouds = {canonical(c.cloud) for c in spec.resources.candidates} | rt.clouds
        rt.touched.clear()
        instances = await self._instances(name, clouds, rt)
        offerings = [] if down else await self._offerings(spec, rt)
        writes = self.store.writes
        replicas = self.store.list_replicas(name)
        facts = await self._failure_facts(replicas, instances)
        # ---- from here to the end of the tick: no await (replicas a task changed
        # during the awaits are in rt.touched: the next tick looks at them)
        if self.store.writes != writes:  # else nothing was written meanwhile: as read
            replicas = self.store.list_replicas(name)
        now = self.clock.now()
        with _Tx(self.store) as tx:
            replicas, orphans = self._sync(rt, replicas, instances, facts, tx)
            replicas = self._apply_probes(rt, replicas, tx)
            if down:  # the shutdown is policies' decision too
                terms = list(shutdown_terminations(_view(r, rt) for r in replicas))
                plan: Plan | None = None
            else:
                plan = self._plan(rt, svc, spec, replicas, offerings, tx)
                terms = list(plan.terminations)
            replicas = self._record_terminations(rt, terms, replicas, tx)
            if plan is not None and plan.launches:
                replicas += self.launcher.record(rt, list(plan.launches), tx(), offerings)
            wrote = tx.opened
        rt.clouds = {canonical(r.location.cloud) for r in replicas}
        started = self._actuate(rt, replicas, orphans)
        self._publish(rt, replicas, plan.cutover if plan is not None else None)
        if down:
            if not replicas and not self.actuator.in_flight(name):
                return await self._finish_down(name, clouds, instances, rt)
            rt.quiet = False  # draining and terminating: tick each period, not the quiet one
            return False
        assert plan is not None
        rt.next_at = plan.launch_after
        wrote = self._set_status(svc, replicas, plan.failure) or wrote
        wrote = retention.prune(self.store, rt, svc, replicas, now, self.folding) or wrote
        rt.quiet = (
            not wrote
            and not started
            and not self.actuator.in_flight(name)
            and all(r.status is S.READY for r in replicas)
        )
        return False

    def _plan(
        self,
        rt: ServiceRuntime,
        svc: ServiceRecord,
        spec: ServiceSpec,
        replicas: list[ReplicaRecord],
        offerings: list[Offering],
        tx: _Tx,
    ) -> Plan:
        name = svc.name
        if rt.location_states is None:
            rt.location_states = {
                str(loc): st for loc, st in self.store.location_states(name).items()
            }
        if rt.policy_state is None:
            rt.policy_state = self.store.policy_state(name)
        obs = ServiceObservation(
            service=name,
            version=svc.current_version,
            spec=spec,
            replicas=tuple(_view(r, rt) for r in replicas),
            offerings=tuple(offerings),
            location_states={
                _location(loc): LocationState(st) for loc, st in rt.location_states.items()
            },
            events=tuple(rt.events),
            qps=rt.router.request_rate(60.0),
            policy_state=json.loads(json.dumps(rt.policy_state)),  # the plan's own copy
            ended=tuple(rt.ended),
            closed_locations=frozenset(self.breakers.open_locations()),
            update_mode=rt.update_mode,
        )
        rt.events.clear()
        rt.ended.clear()
        now = self.clock.now()
        plan = make_plan(obs, now)
        states = {str(loc): str(st) for loc, st in plan.location_states.items()}
        if states != rt.location_states:
            tx().set_location_states(name, {_location(k): v for k, v in states.items()}, now=now)
            rt.location_states = states
        policy_state = dict(plan.policy_state)
        if _json(policy_state) != _json(rt.policy_state):
            tx().set_policy_state(name, policy_state)
            rt.policy_state = json.loads(_json(policy_state))
        for note in plan.notes:  # a note the previous plan made too is not news
            if note not in rt.notes:
                tx().add_event(name, "plan", note, now=now)
        rt.notes = frozenset(plan.notes)
        rt.plan_summary = {
            "version": svc.current_version,  # the version planned for (`serve update` waits on it)
            "policy": policy_for(spec),
            "target": plan.target,
            "spot_target": plan.spot_target,
            "ondemand_target": plan.ondemand_target,
            "launch_after": plan.launch_after,  # launches held back (backoff, hourly cap) until
        }
        return plan

    # --------------------------------------------------------------- observe
    async def _instances(
        self, name: str, clouds: set[str], rt: ServiceRuntime | None = None
    ) -> dict[str, dict[int, Instance]]:
        return await observe.instances(self.actuator, self.providers, name, clouds, rt)

    async def _offerings(self, spec: ServiceSpec, rt: ServiceRuntime) -> list[Offering]:
        return await observe.offerings(self.actuator, self.providers, spec, rt)

    def _sync(
        self,
        rt: ServiceRuntime,
        replicas: list[ReplicaRecord],
        instances: dict[str, dict[int, Instance]],
        facts: dict[int, failure_facts.FailureFacts],
        tx: _Tx,
    ) -> tuple[list[ReplicaRecord], list[tuple[str, Instance]]]:
        """Provider facts -> transitions. Returns the live replicas as updated, and
        the instances no live replica owns (orphans, to terminate)."""
        known_ids = {r.replica_id for r in replicas}
        out: list[ReplicaRecord] = []
        for r in replicas:
            cloud = canonical(r.location.cloud)
            if cloud in instances and r.replica_id not in rt.touched:  # else unknown this tick
                r = self._sync_one(
                    rt, r, instances[cloud].get(r.replica_id), facts.get(r.replica_id), tx
                )
            if r.is_live:
                out.append(r)
        orphans = [
            (cloud, inst)
            for cloud, by_id in instances.items()
            for rid, inst in by_id.items()
            if rid not in known_ids and rid not in rt.touched
        ]
        return out, orphans

    def _sync_one(
        self,
        rt: ServiceRuntime,
        r: ReplicaRecord,
        inst: Instance | None,
        facts: failure_facts.FailureFacts | None,
        tx: _Tx,
    ) -> ReplicaRecord:
        name, now = rt.name, self.clock.now()
        if r.status in (S.PENDING, S.PROVISIONING):
            busy = self.actuator.busy(name, _key(r))
            if (
                not busy
                and inst is not None
                and inst.state
                in (
                    InstanceState.PENDING,
                    InstanceState.RUNNING,
                )
            ):
                # the launch went through before a restart: adopt it
                if r.status is S.PENDING:
                    r = tx().update_replica(name, r.replica_id, now=now, status=S.PROVISIONING)
                return self.launcher.started(rt, r, inst, tx())
            return r  # its launch is running, or starts (again, same token) below
        if r.status not in (S.STARTING, S.READY, S.NOT_READY):
            return r
        ending = _ending(r, inst)
        if ending is not None:
            return self._end(rt, r, *ending, facts, tx)
        assert inst is not None
        changes: dict[str, Any] = {}
        if inst.endpoint and inst.endpoint != r.endpoint:
            changes["endpoint"] = inst.endpoint
        if inst.interruption_at is not None and inst.interruption_at != r.interruption_at:
            changes["interruption_at"] = inst.interruption_at
            self._note_notice(rt, r, tx)
        if changes:
            r = tx().update_replica(name, r.replica_id, now=now, **changes)
        return r

    def _note_notice(self, rt: ServiceRuntime, r: ReplicaRecord, tx: _Tx) -> None:
        if r.replica_id in rt.noticed:
            return
        rt.noticed.add(r.replica_id)
        now = self.clock.now()
        rt.events.append(LocationEvent(LocationEventKind.NOTICE, r.location, now, r.spot))
        tx().add_event(rt.name, "notice", "interruption notice", now=now, replica_id=r.replica_id)

    async def _failure_facts(
        self, replicas: list[ReplicaRecord], instances: dict[str, dict[int, Instance]]
    ) -> dict[int, failure_facts.FailureFacts]:
        """How the replicas this listing shows failed ended (exit code, log tail;
        the log is read in a thread), gathered before the tick's records."""
        out: dict[int, failure_facts.FailureFacts] = {}
        for r in replicas:
            by_id = instances.get(canonical(r.location.cloud))
            if by_id is None or r.status not in (S.STARTING, S.READY, S.NOT_READY):
                continue
            ending = _ending(r, by_id.get(r.replica_id))
            if ending is not None and ending[0] in FAILURES:
                out[r.replica_id] = await failure_facts.gather(self.providers, r, *ending)
        return out

    def _end(
        self,
        rt: ServiceRuntime,
        r: ReplicaRecord,
        reason: EndReason,
        detail: str,
        facts: failure_facts.FailureFacts | None,
        tx: _Tx,
    ) -> ReplicaRecord:
        """The instance is gone or going: SHUTTING_DOWN now, terminated by a task."""
        now = self.clock.now()
        extra: dict[str, Any] = {}
        if facts is not None:  # how it failed: exit code, log tail
            reason, extra = facts.reason, facts.fields()
            # a launch that failed (capacity, a cut) does not count against the version
            provision = reason is EndReason.FAILED_PROVISION
            rt.ended.append(facts.ended(r, now, capacity=provision))
        if reason is EndReason.PREEMPTED:
            rt.events.append(LocationEvent(LocationEventKind.PREEMPTED, r.location, now, r.spot))
        r = tx().update_replica(
            rt.name, r.replica_id, now=now, status=S.SHUTTING_DOWN, reason=reason, **extra
        )
        tx().add_event(rt.name, reason.value.lower(), detail, now=now, replica_id=r.replica_id)
        rt.table.gone(r.replica_id)
        return r

    def _apply_probes(
        self, rt: ServiceRuntime, replicas: list[ReplicaRecord], tx: _Tx
    ) -> list[ReplicaRecord]:
        out = []
        now = self.clock.now()
        for r in replicas:
            res = rt.prober.results.get(r.replica_id)
            if res is None or res.ok is None or r.status not in (S.STARTING, S.READY, S.NOT_READY):
                out.append(r)
                continue
            if res.ok and r.status in (S.STARTING, S.NOT_READY):
                r = tx().update_replica(
                    rt.name, r.replica_id, now=now, status=S.READY, probe_failures=0
                )
                tx().add_event(
                    rt.name, "ready", f"ready at {r.endpoint}", now=now, replica_id=r.replica_id
                )
            elif (
                not res.ok
                and r.status in (S.READY, S.NOT_READY)
                and (r.status is S.READY or r.probe_failures != res.consecutive_failures)
            ):
                fields: dict[str, Any] = {"probe_failures": res.consecutive_failures}
                if r.status is S.READY:
                    fields["status"] = S.NOT_READY
                    tx().add_event(
                        rt.name,
                        "not_ready",
                        f"probe failed: {res.detail}",
                        now=now,
                        replica_id=r.replica_id,
                    )
                r = tx().update_replica(rt.name, r.replica_id, now=now, **fields)
            out.append(r)
        return out

    # ------------------------------------------------------------- record
    def _record_terminations(
        self, rt: ServiceRuntime, terms: list[Terminate], replicas: list[ReplicaRecord], tx: _Tx
    ) -> list[ReplicaRecord]:
        """Intents: each replica to terminate moves to SHUTTING_DOWN, out of routing."""
        if not terms:
            return replicas
        by_id = {r.replica_id: r for r in replicas}
        now = self.clock.now()
        for t in terms:
            r = by_id.get(t.replica_id)
            if r is None or r.status is S.SHUTTING_DOWN:
                continue
            # a failure the plan decided keeps its detail; the task adds the log tail
            extra = {"failure": t.detail} if t.reason in FAILURES else {}
            by_id[r.replica_id] = tx().update_replica(
                rt.name, r.replica_id, now=now, status=S.SHUTTING_DOWN, reason=t.reason, **extra
            )
            tx().add_event(
                rt.name,
                "terminate",
                f"{t.reason}: {t.detail}".rstrip(": "),
                now=now,
                replica_id=r.replica_id,
            )
            rt.table.gone(r.replica_id)
        return list(by_id.values())

    # ------------------------------------------------------------- actuate
    def _actuate(
        self,
        rt: ServiceRuntime,
        replicas: list[ReplicaRecord],
        orphans: list[tuple[str, Instance]],
    ) -> int:
        """Start the calls the recorded intents ask for; returns how many started."""
        started = 0
        name = rt.name
        for r in replicas:
            key = _key(r)
            if not self.actuator.ready(name, key):
                continue  # running, or backing off after a failure
            if r.status in (S.PENDING, S.PROVISIONING):
                started += self.actuator.start(name, key, self.launcher.launch_one(rt, r))
            elif r.status is S.SHUTTING_DOWN and not self._draining(rt, r):
                started += self.actuator.start(name, key, self.terminator.terminate_one(rt, r))
        for cloud, inst in orphans:
            key = f"i:{inst.instance_id}"
            if self.actuator.ready(name, key):
                started += self.actuator.start(
                    name, key, self.terminator.terminate_orphan(rt, cloud, inst)
                )
        return started

    def _draining(self, rt: ServiceRuntime, r: ReplicaRecord) -> bool:
        """True while the router still has requests in flight to ``r`` (bounded by
        the current spec's load_balancer.drain_timeout_seconds): its termination waits for
        a later tick, so a scale-down or an update does not cut requests."""
        drain = rt.specs[max(rt.specs)].service if rt.specs else ServiceSection()
        waited = self.clock.now() - r.status_since
        if waited >= drain.drain_timeout_seconds:
            return False
        if isinstance(rt.router, RemoteRouter):
            # the router process's in-flight counts mean something only once it has
            # applied a table without the replica (its reports lag the table)
            settled = rt.router.settled(r.replica_id)
            if settled is None:  # no router process reporting: wait a little for one
                return waited < UNREPORTED_DRAIN_SECONDS
            if not settled:
                return True
        in_flight = rt.router.replica_stats().get(r.replica_id, {}).get("in_flight", 0)
        return in_flight > 0

    # --------------------------------------------------------------- publish
    def _publish(
        self, rt: ServiceRuntime, live: list[ReplicaRecord], cutover: Cutover | None
    ) -> None:
        """Probe targets and the routing table's candidates, from the statuses (and
        the plan's blue-green gate, if an update is in progress)."""
        serving = [r for r in live if r.endpoint and r.status in (S.STARTING, S.READY, S.NOT_READY)]
        for v in {r.version for r in serving} - set(rt.specs):  # (a restart mid-update)
            rt.spec(self.store.get_version(rt.name, v), self.secrets)
        probes = {v: s.service.readiness_probe for v, s in rt.specs.items()}
        rt.prober.set_targets(
            [Target(r.replica_id, r.endpoint or "", probes[r.version]) for r in serving]
        )
        rt.table.set_candidates(
            {r.replica_id: (backend_of(r), _view(r, rt)) for r in serving}, cutover=cutover
        )

    def _set_status(self, svc: ServiceRecord, live: list[ReplicaRecord], failure: str) -> bool:
        if any(r.status is S.READY for r in live):
            status = ServiceStatus.READY
        elif failure:  # plan gave the current version up (policies.failures)
            status = ServiceStatus.FAILED
        elif any(r.status in (S.PENDING, S.PROVISIONING, S.STARTING) for r in live):
            status = ServiceStatus.REPLICA_INIT
        else:
            status = ServiceStatus.NO_REPLICA
        if status is svc.status:
            return False
        # `svc` was read when the tick began: a `serve down` that arrived during
        # the tick's awaits must not be overwritten (the deletion would be lost)
        current = self.store.get_service(svc.name)
        if current is None or current.status is ServiceStatus.SHUTTING_DOWN:
            return False
        if status is current.status:
            return False
        self.store.update_service(svc.name, now=self.clock.now(), status=status)
        return True

    async def sweep_purged(self, rt: ServiceRuntime) -> int:
        """The service was purged from the store (``serve down --purge``) while this
        controller ran it: terminate what its clouds still list for it (orphans now,
        with no row to record them in). The number of terminations started."""
        instances = await self._instances(rt.name, rt.clouds or set())
        started = 0
        for cloud, listed in sorted(instances.items()):
            for inst in listed.values():
                if inst.state is not InstanceState.TERMINATED:
                    started += self.actuator.start(
                        rt.name,
                        f"i:{inst.instance_id}",
                        self.terminator.terminate_orphan(rt, cloud, inst),
                    )
        if started:
            log.warning("%s: purged with %d instance(s) listed: terminating them", rt.name, started)
        return started

    async def _finish_down(
        self,
        name: str,
        clouds: set[str],
        instances: dict[str, dict[int, Instance]],
        rt: ServiceRuntime,
    ) -> bool:
        """Nothing live, nothing in flight: once every cloud listed nothing left
        (orphans are being terminated by tasks), forget the service.

        A cloud that could not be listed counts only where the service has (or
        recently had) a replica row: every launch is recorded before its call, so
        a cloud with none was never asked for an instance (the spec's cloud with
        no credentials: nothing to wait for)."""
        rows = {
            canonical(r.location.cloud)
            for r in self.store.list_replicas(name, include_terminated=True)
        }
        unlisted = {c for c in clouds if c not in instances}
        if unlisted & rows or any(instances[c] for c in clouds - unlisted):
            return False
        if unlisted:
            log.warning(
                "%s: down without listing %s (no replica was ever placed there)",
                name,
                ", ".join(sorted(unlisted)),
            )
        clouds = clouds - unlisted
        for cloud in sorted(clouds):
            provider = self.providers.get(cloud)
            try:
                await self.actuator.call(
                    cloud, "observe", f"release {name}", partial(provider.release_service, name)
                )
            except (TransientError, ProviderError) as e:
                log.warning("%s: releasing its %s resources failed: %s", name, cloud, e)
                return False
        self.store.delete_service(name)
        return True


def _key(r: ReplicaRecord) -> str:
    return f"r{r.replica_id}"


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=False, default=str)


def _location(text: str) -> Location:
    return Location.parse(text)


def _ending(r: ReplicaRecord, inst: Instance | None) -> tuple[EndReason, str] | None:
    """Why a STARTING/READY/NOT_READY replica ends, by its instance; None: it does not."""
    if inst is not None and inst.launch_failed:
        # its launch never finished (provisioning failed, or cut short and adopted):
        # neither a preemption nor the version's fault
        return EndReason.FAILED_PROVISION, inst.detail or "launch failed"
    if inst is None or inst.state is InstanceState.PREEMPTED:
        # a spot instance that vanished was taken by the cloud (GCP and Azure
        # delete preempted spot VMs); an on-demand one that vanished failed
        reason = EndReason.PREEMPTED if r.spot else EndReason.FAILED
        return reason, "instance preempted" if inst else "instance gone"
    if inst.state in (InstanceState.TERMINATED, InstanceState.FAILED):
        return EndReason.FAILED, inst.detail or f"instance {inst.state}"
    return None


def _view(r: ReplicaRecord, rt: ServiceRuntime) -> ReplicaView:
    return view_of(r, unreachable=rt.table.is_gone(r.replica_id))
