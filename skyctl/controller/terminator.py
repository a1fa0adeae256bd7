"""Terminating instances: a task per replica (or orphan instance), off the tick.

The tick records the intent (the replica SHUTTING_DOWN with its reason, out of
routing); a task of the :class:`~skyctl.controller.actuator.Actuator` runs
:meth:`Terminator.terminate_one`: for a failure the plan decided, it keeps the
replica's log tail first (the instance and its log go next), then calls the
provider under the terminate deadline and records TERMINATED. A failed call
leaves the replica SHUTTING_DOWN and backs off; a later tick starts it again
(not found counts as done), as does a restarted controller.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from providers.registry import ProviderSet, canonical
from skyctl.clock import Clock
from skyctl.controller import failure_facts
from skyctl.controller.actuator import Actuator
from skyctl.controller.runtime import ServiceRuntime
from skyctl.errors import ProviderError, ServiceNotFound, TransientError
from skyctl.lifecycle import FAILURES, ReplicaStatus
from skyctl.store import ReplicaRecord, Store
from skyctl.types import Instance

log = logging.getLogger(__name__)
S = ReplicaStatus


@dataclass
class Terminator:
    store: Store
    providers: ProviderSet
    clock: Clock
    actuator: Actuator

    async def terminate_one(self, rt: ServiceRuntime, r: ReplicaRecord) -> None:
        """A task: terminate a SHUTTING_DOWN replica's instance, then TERMINATED."""
        name, key = rt.name, f"r{r.replica_id}"
        if r.end_reason in FAILURES and r.log_tail is None and r.instance_id:
            # the plan ended it (and counted it): keep its log tail for status, read
            # before the instance (and its log) goes
            assert r.end_reason is not None
            facts = await failure_facts.gather(self.providers, r, r.end_reason, r.failure or "")
            r = self.store.update_replica(
                name, r.replica_id, now=self.clock.now(), **facts.fields()
            )
        if r.instance_id:
            cloud = canonical(r.location.cloud)
            provider, iid = self.providers.get(cloud), r.instance_id
            try:
                await self.actuator.call(
                    cloud, "terminate", f"terminate {iid}", lambda: provider.terminate(iid)
                )
            except (TransientError, ProviderError) as e:
                delay = self.actuator.failed(name, key)
                self.store.add_event(
                    name,
                    "terminate_retry",
                    f"{e}; again in {delay:g}s",
                    now=self.clock.now(),
                    replica_id=r.replica_id,
                )
                return  # still SHUTTING_DOWN; a later tick tries again
        self.actuator.forget(name, key)
        rt.touched.add(r.replica_id)
        current = self.store.get_replica(name, r.replica_id)
        if current is not None and current.status is S.SHUTTING_DOWN:
            self.store.update_replica(name, r.replica_id, now=self.clock.now(), status=S.TERMINATED)
        rt.prober.forget(r.replica_id)
        rt.noticed.discard(r.replica_id)

    async def terminate_orphan(self, rt: ServiceRuntime, cloud: str, inst: Instance) -> None:
        key, provider = f"i:{inst.instance_id}", self.providers.get(cloud)
        try:
            await self.actuator.call(
                cloud,
                "terminate",
                f"terminate {inst.instance_id}",
                lambda: provider.terminate(inst.instance_id),
            )
        except (TransientError, ProviderError) as e:
            self.actuator.failed(rt.name, key)
            log.warning("%s: terminating orphan %s failed: %s", rt.name, inst.instance_id, e)
            return
        self.actuator.forget(rt.name, key)
        with contextlib.suppress(ServiceNotFound):  # a purged service has no event log
            self.store.add_event(
                rt.name,
                "orphan",
                f"terminated unknown instance {inst.instance_id}",
                now=self.clock.now(),
                replica_id=inst.replica_id,
            )
