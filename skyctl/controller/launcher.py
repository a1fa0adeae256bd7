"""Launching replicas: intent recorded, provider called, outcome recorded.

A replica is added PENDING with a fresh client token, moved to PROVISIONING
before ``launch`` and to STARTING with its instance after it. A capacity or
quota error ends it FAILED_PROVISION and tells placement (a CAPACITY_ERROR
location event); a transient error is retried with the same token on the next
tick, and feeds the location's circuit breaker.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field

from policies.model import Launch, LocationEvent, LocationEventKind, ReplicaEnded
from providers.base import LaunchRequest
from providers.registry import ProviderSet
from skyctl.clock import Clock
from skyctl.controller.breaker import Breakers
from skyctl.controller.pricing import ondemand_price
from skyctl.controller.runtime import ServiceRuntime
from skyctl.errors import CapacityError, ConfigError, ProviderError, QuotaError, TransientError
from skyctl.lifecycle import EndReason, ReplicaStatus
from skyctl.secrets import Secrets
from skyctl.spec import ServiceSpec
from skyctl.store import ReplicaRecord, Store
from skyctl.types import Instance, Offering

S = ReplicaStatus

#: launch attempts (same client token) before a replica counts as failed to provision
MAX_LAUNCH_ATTEMPTS = 3


@dataclass
class Launcher:
    store: Store
    providers: ProviderSet
    clock: Clock
    secrets: Secrets
    breakers: Breakers = field(init=False)

    def __post_init__(self) -> None:
        self.breakers = Breakers(self.clock)

    async def launch_all(
        self, rt: ServiceRuntime, spec: ServiceSpec, launches: list[Launch]
    ) -> None:
        ondemand = [await ondemand_price(self.providers, spec, x.offering) for x in launches]
        now = self.clock.now()
        records: list[ReplicaRecord] = []
        with self.store.transaction():
            for launch, od_price in zip(launches, ondemand, strict=True):
                off = launch.offering
                r = self.store.add_replica(
                    rt.name,
                    version=launch.version,
                    location=off.location,
                    spot=off.spot,
                    price=off.price,
                    instance_type=off.instance_type,
                    client_token=secrets.token_hex(16),
                    now=now,
                    ondemand_price=od_price,
                )
                self.store.add_event(
                    rt.name,
                    "launch",
                    f"{'spot' if off.spot else 'on-demand'} in {off.location} "
                    f"at ${off.price:.2f}/h {launch.reason}".rstrip(),
                    now=now,
                    replica_id=r.replica_id,
                )
                records.append(r)
        await asyncio.gather(*(self.launch_one(rt, r) for r in records))

    async def launch_one(self, rt: ServiceRuntime, r: ReplicaRecord) -> None:
        name = rt.name
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
        try:
            inst = await self.providers.get(r.location.cloud).launch(request)
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
                self.store.add_event(
                    name, "launch_retry", str(e), now=self.clock.now(), replica_id=r.replica_id
                )
            return
        except (ProviderError, ConfigError) as e:  # the spec's fault: counts against it
            self.fail(rt, r, f"{type(e).__name__}: {e}")
            return
        self.breakers.success(r.location)
        if r.spot:
            rt.events.append(
                LocationEvent(LocationEventKind.LAUNCHED, r.location, self.clock.now())
            )
        self.started(rt, r, inst)

    def fail(
        self, rt: ServiceRuntime, r: ReplicaRecord, detail: str, *, capacity: bool = False
    ) -> None:
        """FAILED_PROVISION, told to the next plan: ``capacity`` (the location's fault:
        capacity, quota, a failing API) does not count against the version."""
        now = self.clock.now()
        line = detail.replace("\n", " ")[:500]
        self.store.update_replica(
            rt.name,
            r.replica_id,
            now=now,
            status=S.TERMINATED,
            reason=EndReason.FAILED_PROVISION,
            failure=line,
        )
        rt.ended.append(
            ReplicaEnded(
                r.replica_id, r.version, EndReason.FAILED_PROVISION, now, None, line, capacity
            )
        )
        self.store.add_event(rt.name, "launch_failed", detail, now=now, replica_id=r.replica_id)

    def started(self, rt: ServiceRuntime, r: ReplicaRecord, inst: Instance) -> ReplicaRecord:
        return self.store.update_replica(
            rt.name,
            r.replica_id,
            now=self.clock.now(),
            status=S.STARTING,
            instance_id=inst.instance_id,
            endpoint=inst.endpoint,
            price=inst.price or r.price,
        )
