"""What the controller keeps in memory for one service between ticks.

Everything here can be rebuilt from the store after a restart: the parsed
specs (from the stored YAML and encrypted secrets), the router (on the stored port; or its
entry in the routing feed when the router runs in its own process), the probe
results (by probing again) and the pending location events (lost events only
delay a placement decision by a tick). The routing table has one owner,
:class:`~skyctl.controller.routing_table.RoutingTable`; probe results and
provider signals change it at once, between ticks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from policies.model import LocationEvent, ReplicaEnded
from skyctl.clock import Clock
from skyctl.controller.prober import Prober
from skyctl.controller.routing_feed import RemoteRouter, RoutingFeed
from skyctl.controller.routing_table import RoutingTable
from skyctl.router import Router
from skyctl.router.security import router_secrets
from skyctl.secrets import Secrets
from skyctl.spec import ServiceSpec
from skyctl.store import Store, VersionRecord
from skyctl.types import Backend

log = logging.getLogger(__name__)


@dataclass
class ServiceRuntime:
    name: str
    router: Router | RemoteRouter  # in this process, or the router process's (the feed)
    prober: Prober
    table: RoutingTable
    wake: Callable[[], None]  # asks for a tick of this service soon
    specs: dict[int, ServiceSpec] = field(default_factory=dict)
    versions: dict[int, VersionRecord] = field(default_factory=dict)  # as stored, by number
    events: list[LocationEvent] = field(default_factory=list)
    ended: list[ReplicaEnded] = field(default_factory=list)  # failures for the next plan
    noticed: set[int] = field(default_factory=set)  # replicas whose notice became an event
    plan_summary: dict[str, object] = field(default_factory=dict)
    last_error: str = ""
    # the clouds found unusable (ConfigError), each with its message: cleared
    # when the cloud answers again, and last_error with it
    unusable: dict[str, str] = field(default_factory=dict)
    tick_error: str = ""  # the last tick failure logged (a repeat is not logged again)
    launch_error: str = ""  # the last launch failure: last_error until a launch lands
    quiet: bool = False  # the last tick found nothing to do (ticked less often)
    # the store's placement and policy state as last read or written (only this
    # controller writes them), so an unchanged plan writes nothing
    location_states: dict[str, str] | None = None
    policy_state: dict[str, object] | None = None
    purge_at: float = 0.0  # when its history is next pruned (controller.retention)
    next_at: float | None = None  # the plan held launches back until then: tick then
    clouds: set[str] | None = None  # where its live replicas were at the last tick
    update_mode: str = "rolling"  # the current version's (serve update --mode)
    # the last plan's notes: one the next plan repeats (a condition that holds,
    # "no on-demand offering") is logged once, not every tick
    notes: frozenset[str] = frozenset()
    # replicas a launch task recorded an outcome for since the tick began: the
    # tick's instance listing may predate it, so it does not judge them
    touched: set[int] = field(default_factory=set)

    @property
    def backends(self) -> list[Backend]:
        """What the router has now."""
        return self.table.backends

    def spec(self, record: VersionRecord, secrets: Secrets) -> ServiceSpec:
        """The spec of a stored version (parsed once, secrets put back)."""
        spec = self.specs.get(record.version)
        if spec is None:
            spec = load_spec(record, secrets)
            self.specs[record.version] = spec
        return spec

    def forget_versions(self, keep: set[int]) -> None:
        """Drop the cached versions and specs not in ``keep`` (a long-lived service
        updated often kept every spec it ever parsed)."""
        for cache in (self.versions, self.specs):
            for version in [v for v in cache if v not in keep]:
                del cache[version]


def load_spec(record: VersionRecord, secrets: Secrets) -> ServiceSpec:
    """Parse a stored version with its secrets decrypted: the one way the controller
    reads a stored spec (the store holds the YAML redacted, see skyctl.secrets)."""
    return secrets.open(record.yaml_text, record.source, record.secrets_ciphertext)


def make_runtime(
    name: str,
    spec: ServiceSpec,
    *,
    clock: Clock,
    wake: Callable[[], None],
    feed: RoutingFeed | None = None,
    store: Store | None = None,
) -> ServiceRuntime:
    """``wake`` asks for a tick of this service (probe changes, router errors);
    with a ``feed`` (and the ``store`` its specs come from) the router is the
    router process's, fed through the feed, else one in this process."""
    holder: list[RoutingTable] = []

    def on_result(replica_id: int, ok: bool) -> None:
        holder[0].probe(replica_id, ok)  # routable (or not) now, the store follows in a tick

    prober = Prober(spec.service.readiness_probe, clock=clock, on_change=wake, on_result=on_result)

    def on_backend_error(replica_id: int, reason: str) -> None:
        log.info("service %s: replica %d reported by the router: %s", name, replica_id, reason)
        prober.probe_soon(replica_id)
        wake()

    router: Router | RemoteRouter
    if feed is not None and store is not None:

        def load(db: Store = store) -> VersionRecord:
            svc = db.get_service(name)
            if svc is None:
                raise LookupError(f"no service named {name!r}")
            return db.get_version(name, svc.current_version)

        router = RemoteRouter(name, spec.service, feed, load, on_backend_error)
    else:
        router = Router(
            name,
            spec.service,
            clock=clock,
            on_backend_error=on_backend_error,
            secrets=router_secrets(spec),
        )
    table = RoutingTable(router.set_backends)
    holder.append(table)
    return ServiceRuntime(name=name, router=router, prober=prober, table=table, wake=wake)
