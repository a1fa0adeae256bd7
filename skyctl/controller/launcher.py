"""Launching replicas: intent recorded, provider called, outcome recorded.

The tick records a replica PENDING with a fresh client token (:meth:`Launcher.record`);
a task of the :class:`~skyctl.controller.actuator.Actuator` moves it to
PROVISIONING before ``launch`` and to STARTING with its instance after it
(:meth:`Launcher.launch_one`), under the launch deadline. A capacity or
quota error ends it FAILED_PROVISION and tells placement (a CAPACITY_ERROR
location event); a transient error (a missed deadline too) is retried with the
same token after a backoff, and feeds the location's circuit breaker.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from policies.model import Launch, LocationEvent, LocationEventKind, ReplicaEnded, ReplicaView
from providers.base import LaunchRequest
from providers.registry import ProviderSet, canonical
from skyctl.clock import Clock
from skyctl.controller.actuator import Actuator
from skyctl.controller.breaker import Breakers
from skyctl.controller.pricing import ondemand_price_in
from skyctl.controller.prober import Target
from skyctl.controller.runtime import ServiceRuntime
from skyctl.errors import CapacityError, ConfigError, ProviderError, QuotaError, TransientError
from skyctl.lifecycle import EndReason, ReplicaStatus
from skyctl.secrets import Secrets
from skyctl.store import ReplicaIntent, ReplicaRecord, Store
from skyctl.types import Backend, Instance, Offering

S = ReplicaStatus
log = logging.getLogger(__name__)

#: launch attempts (same client token) before a replica counts as failed to provision
MAX_LAUNCH_ATTEMPTS = 3


@dataclass
class Launcher:
    store: Store
    providers: ProviderSet
    clock: Clock
    secrets: Secrets
    actuator: Actuator
    breakers: Breakers = field(init=False)

    def __post_init__(self) -> None:
        self.breakers = Breakers(self.clock)

    def record(
        self,
        rt: ServiceRuntime,
        launches: list[Launch],
        store: Store,
        offerings: Sequence[Offering] = (),
    ) -> list[ReplicaRecord]:
        """The intents: one PENDING replica with a fresh client token per launch
        (``store`` is the tick's transaction); the calls start afterwards. Its
        on-demand price (for savings) comes from the tick's ``offerings``."""
        now = self.clock.now()
        intents = [
            ReplicaIntent(
                version=launch.version,
                location=launch.offering.location,
                spot=launch.offering.spot,
                price=launch.offering.price,
                instance_type=launch.offering.instance_type,
                client_token=secrets.token_hex(16),
                ondemand_price=ondemand_price_in(offerings, launch.offering),
            )
            for launch in launches
        ]
        records = store.add_replicas(rt.name, intents, now=now)  # one burst, a few statements
        store.add_events(
            rt.name,
            [
                (
                    "launch",
                    f"{'spot' if launch.offering.spot else 'on-demand'} in "
                    f"{launch.offering.location} at ${launch.offering.price:.2f}/h "
                    f"{launch.reason}".rstrip(),
                    r.replica_id,
                )
                for launch, r in zip(launches, records, strict=True)
            ],
            now=now,
        )
        return records

    async def launch_one(self, rt: ServiceRuntime, r: ReplicaRecord) -> None:
        """A task: one launch attempt of a PENDING/PROVISIONING replica, its outcome recorded."""
        name, key = rt.name, f"r{r.replica_id}"
        current = self.store.get_replica(name, r.replica_id)
        if current is None or current.status not in (S.PENDING, S.PROVISIONING):
            return  # a tick decided otherwise before this task ran
        r = current
        version = self.store.get_version(name, r.version)
        spec = rt.spec(version, self.secrets)
        r = self.store.update_replica(
            name,
            r.replica_id,
            now=self.clock.now(),
            status=S.PROVISIONING if r.status is S.PENDING else None,
            launch_attempts=r.launch_attempts + 1,
        )
        offering = Offering(r.location, r.spot, r.price, r.instance_type)
        request = LaunchRequest(
            service=name,
            replica_id=r.replica_id,
            version=r.version,
            offering=offering,
            client_token=r.client_token,
            spec=spec,
            port=spec.serving_port or 8080,  # the one resources.ports too, as SkyServe
            envs={**spec.envs, **spec.secrets},
        )
        if not self.breakers.allows(r.location):
            if r.spot:
                rt.events.append(
                    LocationEvent(LocationEventKind.CAPACITY_ERROR, r.location, self.clock.now())
                )
            self.fail(rt, r, f"{r.location}: its API keeps failing; breaker open", capacity=True)
            return
        cloud = canonical(r.location.cloud)
        provider = self.providers.get(cloud)
        try:
            inst = await self.actuator.call(
                cloud,
                "launch",
                f"launch of replica {r.replica_id}",
                lambda: provider.launch(request),
            )
        except (CapacityError, QuotaError) as e:
            now = self.clock.now()
            if r.spot:
                rt.events.append(LocationEvent(LocationEventKind.CAPACITY_ERROR, r.location, now))
            self.fail(rt, r, f"{type(e).__name__}: {e}", capacity=True)
            return
        except TransientError as e:
            if self.breakers.failure(r.location):
                self.store.add_event(
                    name,
                    "breaker_open",
                    f"{r.location}: transient errors; placing elsewhere",
                    now=self.clock.now(),
                    replica_id=r.replica_id,
                )
                if r.spot:
                    rt.events.append(
                        LocationEvent(
                            LocationEventKind.CAPACITY_ERROR, r.location, self.clock.now()
                        )
                    )
                self.fail(rt, r, f"{type(e).__name__}: {e}", capacity=True)
            elif r.launch_attempts >= MAX_LAUNCH_ATTEMPTS:
                self.fail(rt, r, f"gave up after {r.launch_attempts} attempts: {e}", capacity=True)
            else:
                delay = self.actuator.failed(name, key)
                self.store.add_event(
                    name,
                    "launch_retry",
                    f"{e}; again in {delay:g}s",
                    now=self.clock.now(),
                    replica_id=r.replica_id,
                )
            return
        except (ProviderError, ConfigError) as e:  # the spec's fault: counts against it
            self.fail(rt, r, f"{type(e).__name__}: {e}")
            return
        self.breakers.success(r.location)
        self.actuator.forget(name, key)
        if rt.launch_error and rt.last_error == rt.launch_error:
            rt.last_error = ""  # a launch landed: the launch failures are over
        rt.launch_error = ""
        if r.spot:
            rt.events.append(
                LocationEvent(LocationEventKind.LAUNCHED, r.location, self.clock.now())
            )
        if not self._landed(rt, r, inst):
            await self._unrecorded(rt, cloud, inst)

    def _landed(self, rt: ServiceRuntime, r: ReplicaRecord, inst: Instance) -> bool:
        """Record a launch's instance, whatever the tick decided meanwhile. False: no
        row is left to record it in (the service was purged while this launch ran)."""
        rt.touched.add(r.replica_id)
        current = self.store.get_replica(rt.name, r.replica_id)
        if current is None:
            return False
        if current.status is S.TERMINATED:
            return True  # its instance is an orphan now: the next tick terminates it
        if current.status is S.PROVISIONING:
            r = self.started(rt, current, inst, self.store)
            if r.endpoint:  # probed from now on, routed as soon as a probe passes
                spec = rt.specs.get(r.version)  # its version's probe (launch_one parsed it)
                probe = spec.service.readiness_probe if spec is not None else None
                rt.prober.add_target(Target(r.replica_id, r.endpoint, probe))
                rt.table.add_candidate(backend_of(r), view_of(r))
        elif current.status is S.SHUTTING_DOWN and not current.instance_id:
            # terminated while launching: keep the instance id, so the
            # termination reaches the instance
            self.store.update_replica(
                rt.name, r.replica_id, now=self.clock.now(), instance_id=inst.instance_id
            )
        return True

    async def _unrecorded(self, rt: ServiceRuntime, cloud: str, inst: Instance) -> None:
        """The service was purged (``serve down --purge``) while this launch ran: its
        sweep could not see this instance yet and no tick of it comes again, so the
        launch terminates what it made (a failure is logged; the next controller start
        collects instances of services the store does not know)."""
        provider, iid = self.providers.get(cloud), inst.instance_id
        try:
            await self.actuator.call(
                cloud, "terminate", f"terminate {iid}", lambda: provider.terminate(iid)
            )
        except (TransientError, ProviderError) as e:
            log.warning("%s: terminating %s, launched after its purge, failed: %s", rt.name, iid, e)
            return
        log.warning("%s: terminated %s, launched after its purge", rt.name, iid)

    def fail(
        self, rt: ServiceRuntime, r: ReplicaRecord, detail: str, *, capacity: bool = False
    ) -> None:
        """FAILED_PROVISION, told to the next plan: ``capacity`` (the location's fault:
        capacity, quota, a failing API) does not count against the version."""
        name, now = rt.name, self.clock.now()
        line = detail.replace("\n", " ")[:500]
        rt.touched.add(r.replica_id)
        self.actuator.forget(name, f"r{r.replica_id}")
        current = self.store.get_replica(name, r.replica_id)
        if current is None or current.status is S.TERMINATED:
            return
        if current.status is S.SHUTTING_DOWN and current.end_reason is not None:
            # it was being terminated anyway: that stays its end
            self.store.update_replica(name, r.replica_id, now=now, status=S.TERMINATED)
            self.store.add_event(name, "launch_failed", detail, now=now, replica_id=r.replica_id)
            return
        # the service's last error until a launch lands (capacity, a failing API
        # included: with every launch refused the service would say nothing)
        rt.last_error = rt.launch_error = f"replica {r.replica_id}: launch failed: {line}"
        with self.store.transaction():
            self.store.update_replica(
                name,
                r.replica_id,
                now=now,
                status=S.TERMINATED,
                reason=EndReason.FAILED_PROVISION,
                failure=line,
            )
            self.store.add_event(name, "launch_failed", detail, now=now, replica_id=r.replica_id)
        rt.ended.append(
            ReplicaEnded(
                r.replica_id, r.version, EndReason.FAILED_PROVISION, now, None, line, capacity
            )
        )

    def started(
        self, rt: ServiceRuntime, r: ReplicaRecord, inst: Instance, store: Store
    ) -> ReplicaRecord:
        return store.update_replica(
            rt.name,
            r.replica_id,
            now=self.clock.now(),
            status=S.STARTING,
            instance_id=inst.instance_id,
            endpoint=inst.endpoint,
            price=inst.price or r.price,
        )


def backend_of(r: ReplicaRecord) -> Backend:
    """The routing table's entry for a replica with an endpoint."""
    assert r.endpoint is not None
    return Backend(
        replica_id=r.replica_id,
        url=r.endpoint,
        location=r.location,
        spot=r.spot,
        accelerators="",
        version=r.version,
    )


def view_of(r: ReplicaRecord, *, unreachable: bool = False) -> ReplicaView:
    """A replica row as the policies see it."""
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
        unreachable=unreachable,
    )
