"""Replicas on Google Compute Engine: spot (provisioning model SPOT) or on-demand VMs.

The provider reports offerings from the bundled catalog (``skyctl/data/catalog/
gcp.csv``, overridable) restricted to the zones that sell each machine type
(asked once a day from ``machineTypes.aggregatedList``), and carries out the
controller's launches and terminations through google-cloud-compute's REST
client (:mod:`providers.gcp_api`). It decides nothing.

- Launch: a deterministic instance name and ``requestId`` from the client
  token (idempotent), labels ``skyctl-service/-replica/-version``, the boot
  script from :mod:`providers.bootstrap` as ``startup-script``, a firewall rule
  per service and port that opens only that port to the service's network tag.
  The insert operation is polled until DONE; its errors become CapacityError
  (``ZONE_RESOURCE_POOL_EXHAUSTED``), QuotaError, ...
- Preemption: ``compute.instances.preempted`` operations (one aggregated,
  filtered listing per call) and TERMINATED spot VMs. While the preempted VM
  is still STOPPING (GCP's ~30 s notice) it is reported RUNNING with
  ``interruption_at``; a host maintenance that will stop the VM is reported
  the same way. Each is pushed once as an InstanceEvent.
- The firewall rules of a service are deleted when its last instance goes.
- Multi-node replicas (``num_nodes`` N > 1): N VMs in the offering's zone,
  all or none, grouped by label into one replica (:mod:`providers.gcp_nodes`).

See docs/clouds/gcp.md for the user's side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from providers import gcp_nodes, nodes
from providers.base import LaunchRequest, Provider, per_replica
from providers.bootstrap import render_bootstrap
from providers.catalog import CatalogEntry, load_catalog, match
from providers.events import EventsOnce
from providers.gcp_api import AlreadyExists, ComputeApi, compute_v1, operation_error
from providers.gcp_build import (
    GUEST_ACCELERATORS,
    LABEL_SERVICE,
    LABEL_TOKEN,
    META_SERVICE,
    NOTICE_WATCH,
    instance_body,
    instance_id,
    instance_name,
    label_value,
    last_segment,
    parse_time,
    region_of,
    request_id,
    slug,
    split_instance_id,
    token_label,
    user_labels,
)
from providers.gcp_config import CONFIG_KEYS, check, project_of, validate_config
from providers.gcp_instances import metadata_value, to_instance
from providers.gcp_network import Firewalls
from providers.nodes import node_name
from skyctl.clock import Clock
from skyctl.errors import ConfigError, NotFoundError, SkyctlError
from skyctl.spec import ResourceCandidate, ServiceSpec
from skyctl.types import (
    Instance,
    InstanceEventKind,
    InstanceState,
    Location,
    Offering,
)

__all__ = ["CONFIG_KEYS", "GCPProvider", "check"]

ZONE_CACHE_SECONDS = 24 * 3600.0
PREEMPTED_RETENTION_SECONDS = 3600.0


def _candidate_for(spec: ServiceSpec, offering: Offering) -> ResourceCandidate | None:
    loc = offering.location
    for cand in spec.resources.candidates:
        if (cand.cloud or "").lower() != "gcp":
            continue
        if cand.region not in (None, loc.region) or cand.zone not in (None, loc.zone):
            continue
        if cand.instance_type not in (None, offering.instance_type):
            continue
        return cand
    return None


class GCPProvider(Provider):
    """Compute Engine VMs of one project (see the module docstring)."""

    name = "gcp"

    def __init__(self, config: Mapping[str, Any], *, clock: Clock) -> None:
        validate_config(config)
        self._config = dict(config)
        self._clock = clock
        self._project = project_of(config)
        self._api = ComputeApi(config, clock=clock)
        self._catalog = load_catalog("gcp", config.get("catalog"))
        self._by_type = {(e.instance_type, e.region): e for e in self._catalog}
        self._guests = {e.instance_type: g for e in self._catalog if (g := _guest(e))}
        self._regions: set[str] | None = set(config["regions"]) if config.get("regions") else None
        self._zones: dict[str, tuple[float, frozenset[str]]] = {}  # machine/accel type -> zones
        self._known: dict[str, Instance] = {}  # instances seen, by instance id
        self._gone: dict[str, float] = {}  # preempted and deleted: instance id -> when
        self._deleting: set[str] = set()
        self._told = EventsOnce(self._emit)  # NOTICE / PREEMPTED, once per instance
        self._locks: dict[str, asyncio.Lock] = {}
        self._firewalls = Firewalls(self._api, self._project, config)
        self._firewalls_clean: set[str] = set()  # services known to have no rules
        self._node_of: dict[str, nodes.Node] = {}  # nodes of multi-node replicas, by id
        self._launching: set[str] = set()  # head ids of multi-node launches in flight

    # ------------------------------------------------------------ offerings

    async def offerings(self, spec: ServiceSpec) -> Sequence[Offering]:
        picks: list[tuple[ResourceCandidate, CatalogEntry]] = []
        for cand in spec.resources.candidates:
            if (cand.cloud or "").lower() != "gcp":
                continue
            for entry in match(cand, self._catalog):
                if self._region_allowed(entry.region):
                    picks.append((cand, entry))
        zones = await self._zones_for({e.instance_type for _, e in picks})
        out: dict[tuple[Location, bool, str], Offering] = {}
        for cand, e in picks:
            for zone in sorted(zones.get(e.instance_type, ())):
                if region_of(zone) != e.region or cand.zone not in (None, zone):
                    continue
                loc = Location("gcp", e.region, zone)
                kinds = (True, False) if spec.use_spot else (False,)
                for spot in kinds:
                    price = e.spot_price if spot and e.spot_price is not None else e.ondemand_price
                    out[(loc, spot, e.instance_type)] = Offering(
                        loc, spot, price, e.instance_type, e.accelerators
                    )
        ordered = sorted(out.values(), key=lambda o: (o.price, str(o.location), o.instance_type))
        return per_replica(ordered, spec)  # a multi-node replica is priced as its N VMs

    def _region_allowed(self, region: str) -> bool:
        return self._regions is None or region in self._regions

    async def _zones_for(self, types: set[str]) -> dict[str, frozenset[str]]:
        """machine type -> zones selling it (and its N1 GPU, if any); cached a day."""
        now = self._clock.now()
        names = types | {g for t in types if (g := self._guests.get(t))}
        stale = {n for n in names if n not in self._zones or self._zones[n][0] <= now}
        if stale:
            found: dict[str, set[str]] = {n: set() for n in stale}
            for client, field, batch in (
                (self._api.machine_types, "machine_types", stale & types),
                (self._api.accelerator_types, "accelerator_types", stale - types),
            ):
                if not batch:
                    continue
                for zone, name in await self._aggregated_names(client, field, sorted(batch)):
                    if name in found and (
                        self._regions is None or region_of(zone) in self._regions
                    ):
                        found[name].add(zone)
            for name, where in found.items():
                self._zones[name] = (now + ZONE_CACHE_SECONDS, frozenset(where))
        out: dict[str, frozenset[str]] = {}
        for t in types:
            zones = self._zones[t][1]
            guest = self._guests.get(t)
            out[t] = zones & self._zones[guest][1] if guest else zones
        return out

    async def _aggregated_names(
        self, client: Any, field: str, names: list[str]
    ) -> list[tuple[str, str]]:
        """(zone, name) of every zone's machine or accelerator types named in ``names``."""
        request = {"project": self._project, "filter": f'name eq "({"|".join(names)})"'}

        def fetch() -> list[tuple[str, str]]:
            pager = client.aggregated_list(request=request, **self._api.options())
            return [
                (last_segment(scope), item.name)
                for scope, scoped in pager
                for item in getattr(scoped, field)
            ]

        return await self._api.call(fetch, what=f"list {field.replace('_', ' ')}")

    # --------------------------------------------------------------- launch

    async def launch(self, request: LaunchRequest) -> Instance:
        off = request.offering
        if off.location.cloud != "gcp" or not off.location.zone:
            raise ConfigError(
                f"gcp: cannot launch offering at {off.location} (need gcp/region/zone)"
            )
        zone, n = off.location.zone, request.spec.num_nodes
        name = instance_name(request.service, request.replica_id, request.client_token)
        user_labels(_candidate_for(request.spec, off))  # a bad label: refused before any call
        async with self._lock(request.service):
            await self._firewalls.ensure(request.service, request.port, peers=n > 1)
            self._firewalls_clean.discard(request.service)
            if n == 1:
                inst = await self._insert(request, name, None)
            else:  # every node in this zone, or none (providers.gcp_nodes)
                head = instance_id(zone, name)
                self._launching.add(head)
                every = [node_name(name, k) for k in range(n)]
                try:
                    insts = await nodes.launch_all(
                        n,
                        lambda k: self._insert(request, name, k),
                        lambda: self._delete_all(zone, every),
                    )
                    try:
                        await gcp_nodes.publish(self._api, self._project, zone, insts)
                    except SkyctlError:
                        await self._delete_all(zone, every)  # all nodes or none
                        raise
                    for k, node in enumerate(insts):
                        self._node_of[instance_id(zone, node.name)] = nodes.Node(head, k, n)
                    inst = await self._get(zone, name, location=str(off.location))
                finally:
                    self._launching.discard(head)
        launched = self._to_instance(inst, request.service, zone, preempted_at=None)
        self._known[launched.instance_id] = launched
        return launched

    async def _insert(self, request: LaunchRequest, head: str, rank: int | None) -> Any:
        """Insert one VM (node ``rank`` of a multi-node replica) and return it once created."""
        off = request.offering
        zone, loc = off.location.zone, str(off.location)
        entry = self._by_type.get((off.instance_type, off.location.region))
        accel_name, _, accel_count = off.accelerators.partition(":")
        name = node_name(head, rank or 0)
        body = instance_body(
            name=name,
            zone=zone,
            project=self._project,
            service=request.service,
            replica_id=request.replica_id,
            version=request.version,
            client_token=request.client_token,
            port=request.port,
            spot=off.spot,
            machine_type=off.instance_type,
            accelerator_name=entry.accelerator_name if entry else accel_name,
            accelerator_count=entry.accelerator_count if entry else int(accel_count or 0),
            startup_script=render_bootstrap(
                request,
                notice_watch=NOTICE_WATCH,
                node_script=gcp_nodes.node_script(rank or 0),
            ),
            candidate=_candidate_for(request.spec, off),
            config=self._config,
        )
        token = request.client_token
        if rank is not None:
            body["labels"].update(nodes.node_tags(head, rank, request.spec.num_nodes))
            token = token if rank == 0 else f"{token}#node{rank}"
        try:
            op = await self._api.call(
                self._api.instances.insert_unary,
                request=compute_v1.InsertInstanceRequest(
                    project=self._project,
                    zone=zone,
                    instance_resource=ComputeApi.message(compute_v1.Instance, body),
                    request_id=request_id(token),
                ),
                what=f"launch {name}",
                location=loc,
                **self._api.options(),
            )
        except AlreadyExists:
            op = None  # launched before under this token (past requestId's memory)
        if op is not None:
            op = await self._api.wait_zone_op(
                self._project, zone, op, what=f"launch {name}", location=loc
            )
            err = operation_error(op, f"launch {name}", loc)
            if err is not None:
                raise err
        inst = await self._get(zone, name, location=loc)
        if inst.labels.get(LABEL_TOKEN) != token_label(request.client_token):
            raise ConfigError(f"gcp: instance {zone}/{name} exists but was not launched by skyctl")
        return inst

    async def _get(self, zone: str, name: str, *, location: str | None = None) -> Any:
        return await self._api.call(
            self._api.instances.get,
            project=self._project,
            zone=zone,
            instance=name,
            what=f"get {zone}/{name}",
            location=location,
            **self._api.options(),
        )

    def _lock(self, service: str) -> asyncio.Lock:
        return self._locks.setdefault(service, asyncio.Lock())

    # ------------------------------------------------------------- firewall

    async def _cleanup_if_empty(self, service: str, *, exclude: str = "") -> None:
        """Delete the service's firewall rules once none of its instances is left."""
        async with self._lock(service):
            for inst, zone in await self._list_raw(service):
                iid = instance_id(zone, inst.name)
                stopping = inst.status in ("STOPPING", "TERMINATED")
                if iid != exclude and iid not in self._deleting and not stopping:
                    return
            await self._firewalls.remove_all(service)
            self._firewalls_clean.add(service)

    # ------------------------------------------------------------ terminate

    async def terminate(self, instance_id: str) -> None:
        try:
            zone, name = split_instance_id(instance_id)
        except ValueError:
            return  # not an id this provider made: nothing of ours to delete
        known = self._known.get(instance_id)
        service = known.service if known else None
        multi = known is None or any(n.head == instance_id for n in self._node_of.values())
        try:
            if service is None:
                inst = await self._get(zone, name)
                service = metadata_value(inst, META_SERVICE) or inst.labels.get(LABEL_SERVICE)
        except NotFoundError:
            pass
        names = [name]
        if multi:  # a multi-node replica's workers go with its head (even when it is gone)
            known_nodes = [i for i, n in self._node_of.items() if n.head == instance_id]
            found = await self._workers(zone, name)
            names += sorted({*found, *(split_instance_id(i)[1] for i in known_nodes)} - {name})
        await self._delete_all(zone, names)
        if service:
            await self._cleanup_if_empty(service, exclude=instance_id)

    async def _workers(self, zone: str, head: str) -> list[str]:
        """The names of the nodes labelled with ``head`` as their head."""

        def fetch() -> list[str]:
            pager = self._api.instances.list(
                request={
                    "project": self._project,
                    "zone": zone,
                    "filter": f'labels.{nodes.TAG_HEAD} = "{head}"',
                },
                **self._api.options(),
            )
            return [i.name for i in pager]

        return await self._api.call(fetch, what=f"list the nodes of {zone}/{head}")

    async def _delete_all(self, zone: str, names: Sequence[str]) -> None:
        """Delete these instances (not found counts as done)."""
        for name in names:
            iid = instance_id(zone, name)
            self._known.pop(iid, None)
            self._gone.pop(iid, None)
            self._node_of.pop(iid, None)
            self._told.forget(iid)
            try:
                await self._api.call(
                    self._api.instances.delete_unary,
                    request=compute_v1.DeleteInstanceRequest(
                        project=self._project,
                        zone=zone,
                        instance=name,
                        request_id=request_id(iid, "delete"),
                    ),
                    what=f"terminate {iid}",
                    **self._api.options(),
                )
                self._deleting.add(iid)
            except NotFoundError:
                pass

    # ---------------------------------------------------------------- lists

    async def _list_raw(self, service: str | None) -> list[tuple[Any, str]]:
        """(instance message, zone) of the service's instances, or of every skyctl one."""
        if service is None:
            flt = f"labels.{LABEL_SERVICE}:*"
        else:
            flt = f'labels.{LABEL_SERVICE} = "{label_value(service)}"'

        def fetch() -> list[tuple[Any, str]]:
            pager = self._api.instances.aggregated_list(
                request={"project": self._project, "filter": flt},
                **self._api.options(),
            )
            return [(i, last_segment(scope)) for scope, scoped in pager for i in scoped.instances]

        rows = await self._api.call(fetch, what="list instances")
        if service is None:
            return rows
        return [(i, z) for i, z in rows if metadata_value(i, META_SERVICE) in (None, service)]

    async def _preemptions(self, service: str) -> dict[str, float]:
        """instance id -> when GCP started preempting it (from its operations)."""
        prefix = f"skyctl-{slug(service, 30)}-"
        flt = (
            '(operationType = "compute.instances.preempted") '
            f'(targetLink eq ".*/instances/{prefix}.*")'
        )

        def fetch() -> list[tuple[str, str, str]]:
            pager = self._api.global_ops.aggregated_list(
                request={"project": self._project, "filter": flt},
                **self._api.options(),
            )
            return [
                (last_segment(op.zone), last_segment(op.target_link), op.insert_time)
                for _, scoped in pager
                for op in scoped.operations
                if op.zone
            ]

        ops = await self._api.call(fetch, what="list preemptions")
        out: dict[str, float] = {}
        for zone, name, when in ops:
            iid = instance_id(zone, name)
            out[iid] = max(out.get(iid, 0.0), parse_time(when))
        return out

    async def list_instances(self, service: str) -> Sequence[Instance]:
        rows = await self._list_raw(service)
        if await gcp_nodes.finish(self._api, self._project, rows, self._launching):
            rows = await self._list_raw(service)  # with the node lists just written
        preempted = await self._preemptions(service)
        now = self._clock.now()
        out: list[Instance] = []  # one per node
        present: set[str] = set()
        for inst, zone in rows:
            iid = instance_id(zone, inst.name)
            present.add(iid)
            found = self._to_instance(inst, service, zone, preempted_at=preempted.get(iid))
            self._known[iid] = found
            node, found = gcp_nodes.listed(inst, zone, found)
            if node is not None:
                self._node_of[iid] = node
            out.append(found)
        for iid in [i for i in self._deleting if i not in present]:
            self._deleting.discard(iid)
        for iid, known in list(self._known.items()):
            if iid in present or known.service != service:
                continue
            if (
                iid in preempted
                and now - self._gone.setdefault(iid, now) < PREEMPTED_RETENTION_SECONDS
            ):
                gone = _replace_state(known, InstanceState.PREEMPTED, "preempted and deleted")
                self._known[iid] = gone
                out.append(gone)
            else:
                self._known.pop(iid, None)
                self._gone.pop(iid, None)
                self._node_of.pop(iid, None)
        if not out and service not in self._firewalls_clean and not self._lock(service).locked():
            await self._cleanup_if_empty(service)  # (a launch in flight keeps its rule)
        replicas = nodes.group(
            ((self._node_of.get(i.instance_id), i) for i in out), launching=self._launching
        )
        for replica in replicas:
            self._notify(replica)
        return replicas

    async def list_services(self) -> Sequence[str]:
        names = set()
        for inst, _ in await self._list_raw(None):
            names.add(metadata_value(inst, META_SERVICE) or inst.labels.get(LABEL_SERVICE, ""))
        return sorted(n for n in names if n)

    async def close(self) -> None:
        self._api.close()

    # ------------------------------------------------------------ converting

    def _to_instance(
        self, inst: Any, service: str, zone: str, *, preempted_at: float | None
    ) -> Instance:
        return to_instance(
            inst,
            service=service,
            zone=zone,
            now=self._clock.now(),
            preempted_at=preempted_at,
            deleting=instance_id(zone, inst.name) in self._deleting,
            price_of=self._price,
        )

    def _price(self, machine_type: str, region: str, spot: bool) -> float:
        entry = self._by_type.get((machine_type, region))
        if entry is None:
            return 0.0
        if spot and entry.spot_price is not None:
            return entry.spot_price
        return entry.ondemand_price

    def _notify(self, inst: Instance) -> None:
        if inst.interruption_at is not None:
            kind, at = InstanceEventKind.NOTICE, inst.interruption_at
        elif inst.state is InstanceState.PREEMPTED:
            kind, at = InstanceEventKind.PREEMPTED, self._clock.now()
        else:
            return
        self._told.push(inst, kind, at)


def _guest(entry: CatalogEntry) -> str | None:
    if entry.instance_type.startswith("n1-") and entry.accelerator_name:
        return GUEST_ACCELERATORS.get(entry.accelerator_name.upper())
    return None


def _replace_state(inst: Instance, state: InstanceState, detail: str) -> Instance:
    return replace(inst, state=state, detail=detail, endpoint=None, interruption_at=None)
