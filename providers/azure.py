"""Azure: replicas on spot or on-demand virtual machines (azure-mgmt-compute/network).

One replica is one VM with its own network interface and Standard public IP,
in a shared per-region virtual network, behind a per-service, per-region
network security group that opens only the service port. Names derive from
service, replica and client token (:class:`providers.azure_resources.Names`),
so a retried launch finds or re-creates the same resources instead of new ones.

- Spot: ``priority: Spot``, ``evictionPolicy: Delete``, ``billingProfile.maxPrice: -1``
  (never evicted for price, only for capacity).
- Preemption: a spot VM that is gone while its public IP (tagged) is still
  there (eviction takes the NIC with the VM), a deallocated spot VM, or one
  being deleted that we did not delete, is PREEMPTED; an event is emitted the
  first time a listing sees it. A launch cut short is not: a NIC with no VM, or
  a VM whose provisioning Failed, is FAILED with ``launch_failed``; a launch
  cancelled in this process (the controller's deadline) deletes what it made.
- Notices: Azure announces an eviction about 30 s ahead only inside the VM
  (Scheduled Events, ``Preempt``); :data:`NOTICE_WATCH` polls it and writes the
  kill time to ``$SKYCTL_NOTICE_FILE`` (see ``providers.bootstrap``).
- Terminate deletes the VM (its OS disk goes with it), the NIC and the public
  IP, then the service's NSG in that region once no NIC of the service uses it.
- Multi-node replicas (``num_nodes`` N > 1): N VMs in one zone, all or none,
  their NICs (and so their private addresses) created before any VM, so each
  boots knowing every node's address (:mod:`providers.azure_nodes`).

All ARM calls go through :class:`providers.azure_arm.ArmClient`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from providers import nodes
from providers.azure_arm import CREDENTIAL_HINT, ArmClient
from providers.azure_config import AzureConfig, parse_config, read_public_key
from providers.azure_nodes import find_nodes, private_ip
from providers.azure_resources import (
    DEFAULT_CPU_IMAGE,
    DEFAULT_DISK_GB,
    DEFAULT_GPU_IMAGE,
    TAG_INSTANCE,
    TAG_PORT,
    TAG_SERVICE,
    TAG_SPOT,
    Names,
    VmSettings,
    instance_from_tags,
    instance_from_vm,
    ip_body,
    nic_body,
    nsg_body,
    nsg_name,
    owned_by,
    tags_for,
    vm_body,
    vnet_body,
    vnet_name,
)
from providers.base import LaunchRequest, Provider, per_replica, user_labels
from providers.bootstrap import render_bootstrap
from providers.catalog import CatalogEntry, load_catalog, match
from providers.nodes import node_name
from skyctl.clock import Clock
from skyctl.errors import ConfigError, SkyctlError, TransientError
from skyctl.spec import ResourceCandidate, ServiceSpec
from skyctl.types import (
    Instance,
    InstanceEvent,
    InstanceEventKind,
    InstanceState,
    Location,
    Offering,
)

__all__ = ["NOTICE_WATCH", "AzureProvider", "check"]

_INSTANCE_ID = re.compile(r"^sky-[a-z0-9-]+$")
_NSG_IN_USE = frozenset({"InUseNetworkSecurityGroupCannotBeDeleted"})

#: bash run in the background by the boot script: watch Azure Scheduled Events for an
#: eviction (Preempt) or termination of this VM; write the kill time (epoch s) to the notice file
NOTICE_WATCH = r"""
imds='http://169.254.169.254/metadata/scheduledevents?api-version=2020-07-01'
url="${SKYCTL_SCHEDULED_EVENTS_URL:-$imds}"
interval="${SKYCTL_NOTICE_POLL_SECONDS:-5}"
while true; do
  body=$(curl -s -m 5 -H 'Metadata: true' "$url" 2>/dev/null || true)
  if printf '%s' "$body" | grep -Eq '"EventType" *: *"(Preempt|Terminate)"' &&
     printf '%s' "$body" | grep -q -- "$SKYCTL_VM_NAME"; then
    nb=$(printf '%s' "$body" | grep -Eo '"NotBefore" *: *"[^"]+"' | head -n1 |
         sed -E 's/.*: *"(.*)"/\1/')
    at=$(date -d "$nb" +%s 2>/dev/null || echo $(( $(date +%s) + 30 )))
    echo "$at" > "$SKYCTL_NOTICE_FILE.tmp" && mv "$SKYCTL_NOTICE_FILE.tmp" "$SKYCTL_NOTICE_FILE"
    echo "skyctl: Azure scheduled event: eviction at $at"
    break
  fi
  sleep "$interval"
done
"""


def notice_watch(vm_name: str) -> str:
    return f"SKYCTL_VM_NAME={shlex.quote(vm_name)}\n{NOTICE_WATCH.lstrip()}"


class AzureProvider(Provider):
    """Replicas on Azure VMs (see the module docstring)."""

    name = "azure"

    def __init__(
        self, config: Mapping[str, Any] | None, *, clock: Clock, credential: Any | None = None
    ) -> None:
        self.config: AzureConfig = parse_config(config)
        self._clock = clock
        self.arm = ArmClient(
            subscription_id=self.config.subscription_id,
            resource_group=self.config.resource_group,
            clock=clock,
            credential=credential,
            base_url=self.config.base_url,
            cloud=self.config.cloud,
            credential_scope=self.config.credential_scope,
            ca_bundle=self.config.ca_bundle,
            poll_interval=self.config.poll_interval_seconds,
            max_attempts=self.config.max_attempts,
        )
        self._catalog: list[CatalogEntry] | None = None
        self._subnets: dict[str, str] = {}  # region -> subnet id
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._launching: set[str] = set()
        self._terminating: set[str] = set()
        self._preempted_seen: set[str] = set()
        self._cleanups: set[asyncio.Task[None]] = set()  # after cancelled launches
        self._ssh_key: str | None = None

    # ---- offerings -------------------------------------------------------------------------

    def catalog(self) -> list[CatalogEntry]:
        if self._catalog is None:
            self._catalog = load_catalog("azure", self.config.catalog)
        return self._catalog

    def _candidates(self, spec: ServiceSpec) -> list[ResourceCandidate]:
        return [c for c in spec.resources.candidates if (c.cloud or "").lower() == "azure"]

    async def offerings(self, spec: ServiceSpec) -> Sequence[Offering]:
        out: dict[tuple[Location, bool, str], Offering] = {}
        for cand in self._candidates(spec):
            for e in match(cand, self.catalog()):
                if self.config.regions and e.region not in self.config.regions:
                    continue
                zones = [cand.zone] if cand.zone else list(self.config.zones) or [""]
                spot_price = e.spot_price if e.spot_price is not None else e.ondemand_price
                for zone in zones:
                    loc = Location("azure", e.region, zone)
                    for spot, price in ((True, spot_price), (False, e.ondemand_price)):
                        key = (loc, spot, e.instance_type)
                        out.setdefault(
                            key, Offering(loc, spot, price, e.instance_type, e.accelerators)
                        )
        ordered = sorted(
            out.values(), key=lambda o: (o.price, str(o.location), o.instance_type, o.spot)
        )
        return per_replica(ordered, spec)  # a multi-node replica is priced as its N VMs

    # ---- launch ------------------------------------------------------------------------------

    def _lock(self, service: str, region: str) -> asyncio.Lock:
        return self._locks.setdefault((service, region), asyncio.Lock())

    def _matching(self, request: LaunchRequest) -> list[ResourceCandidate]:
        """The spec's azure candidates that offer the request's instance type (else all)."""
        offering = request.offering
        return [
            c
            for c in self._candidates(request.spec)
            if any(e.instance_type == offering.instance_type for e in match(c, self.catalog()))
        ] or self._candidates(request.spec)

    def _image_and_disk(self, request: LaunchRequest) -> tuple[str, int]:
        offering = request.offering
        cands = self._matching(request)
        image = next((c.image_id for c in cands if c.image_id), None) or self.config.image_id
        if image is None:
            image = DEFAULT_GPU_IMAGE if offering.accelerators else DEFAULT_CPU_IMAGE
        disk = next((c.disk_size for c in cands if c.disk_size), None) or DEFAULT_DISK_GB
        return image, disk

    def _public_key(self) -> str:
        if self._ssh_key is None:
            if self.config.ssh_public_key:
                self._ssh_key = read_public_key(self.config.ssh_public_key)
            else:  # Azure needs a key; without one configured nobody can log in
                from cryptography.hazmat.primitives import serialization
                from cryptography.hazmat.primitives.asymmetric import rsa

                key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
                raw = key.public_bytes(
                    serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
                )
                self._ssh_key = raw.decode("ascii")
        return self._ssh_key

    async def _subnet(self, region: str) -> str:
        if region not in self._subnets:
            where = str(Location("azure", region))
            vnet = await self.arm.put("vnet", vnet_name(region), vnet_body(region), location=where)
            self._subnets[region] = vnet["properties"]["subnets"][0]["id"]
        return self._subnets[region]

    async def _nsg(self, service: str, region: str, port: int) -> str:
        name = nsg_name(service, region)
        existing = await self.arm.get("nsg", name)
        rules = (existing or {}).get("properties", {}).get("securityRules", [])
        if existing is not None and any(r.get("name") == f"skyctl-port-{port}" for r in rules):
            return str(existing["id"])
        body = nsg_body(service, region, {port}, rules)
        nsg = await self.arm.put("nsg", name, body, location=str(Location("azure", region)))
        return str(nsg["id"])

    async def launch(self, request: LaunchRequest) -> Instance:
        offering = request.offering
        loc = offering.location
        if loc.cloud != "azure" or not offering.instance_type:
            raise ConfigError(
                f"azure: cannot launch offering at {loc} ({offering.instance_type!r})"
            )
        labels = user_labels(next(iter(self._matching(request)), None), "azure")
        head = Names.for_launch(request.service, request.replica_id, request.client_token)
        n = request.spec.num_nodes
        all_names = [Names(node_name(head.vm, k)) for k in range(n)]  # n == 1: the head
        where = str(loc)
        self._launching.update(x.vm for x in all_names)
        try:
            vms = [await self.arm.get("vm", x.vm, location=where) for x in all_names]
            if all(
                vm is not None and vm.get("properties", {}).get("provisioningState") != "Failed"
                for vm in vms
            ):
                assert vms[0] is not None
                return await self._with_endpoint(vms[0])
            image, disk = self._image_and_disk(request)
            tags = [  # the spec's labels beside skyctl's tags (which teardown lists by)
                labels
                | tags_for(
                    request.service,
                    request.replica_id,
                    request.version,
                    x,
                    spot=offering.spot,
                    price=offering.price,
                    zone=loc.zone,
                    port=request.port,
                )
                | (nodes.node_tags(head.vm, k, n) if n > 1 else {})
                for k, x in enumerate(all_names)
            ]
            settings = VmSettings(
                loc.region,
                loc.zone,
                offering.instance_type,
                offering.spot,
                image,
                disk,
                self._public_key(),
                "",
            )

            def script(k: int, peers: list[str] | None) -> str:
                return render_bootstrap(
                    request,
                    notice_watch=notice_watch(all_names[k].vm),
                    drain_on_notice=True,
                    node_script=nodes.node_exports(k, peers),
                )

            widest = ["255.255.255.255"] * n if n > 1 else None
            vm_body(replace(settings, bootstrap=script(0, widest)), head, tags[0], "")  # size
            subnet = await self._subnet(loc.region)
            # every node's address first: each VM boots knowing them all (node_exports)
            nets = await nodes.launch_all(
                n, lambda k: self._network(request, all_names[k], tags[k], subnet)
            )
            peers = [private_ip(nic) for _, nic in nets] if n > 1 else None

            async def create_vm(k: int) -> None:
                x = all_names[k]
                body = vm_body(
                    replace(settings, bootstrap=script(k, peers)), x, tags[k], nets[k][1]["id"]
                )
                await self.arm.put("vm", x.vm, body, location=where)

            await nodes.launch_all(n, create_vm)
            vm = await self.arm.get("vm", head.vm, location=where)
            if vm is None:
                raise TransientError(
                    f"azure: VM {head.vm} vanished right after its creation", location=where
                )
            return await self._with_endpoint(vm, ip=nets[0][0])
        except SkyctlError:  # all nodes or none
            await self._cleanup(all_names, request.service, loc.region)
            raise
        except asyncio.CancelledError:  # cut (a deadline): what it made goes, even if cut again
            cleanup = asyncio.ensure_future(self._cleanup(all_names, request.service, loc.region))
            self._cleanups.add(cleanup)  # a strong reference until it is done
            cleanup.add_done_callback(self._cleanups.discard)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(cleanup)
            raise
        finally:
            self._launching.difference_update(x.vm for x in all_names)

    async def _network(
        self, request: LaunchRequest, names: Names, tags: dict[str, str], subnet: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The public IP and the NIC of one VM (node)."""
        loc = request.offering.location
        where = str(loc)
        ip = await self.arm.put("ip", names.ip, ip_body(loc.region, loc.zone, tags), location=where)
        # a terminate deletes the NSG only while no NIC of the service uses it
        async with self._lock(request.service, loc.region):
            nsg = await self._nsg(request.service, loc.region, request.port)
            nic = await self.arm.put(
                "nic",
                names.nic,
                nic_body(loc.region, tags, subnet, ip["id"], nsg),
                location=where,
            )
        return ip, nic

    async def _cleanup(self, names: Sequence[Names], service: str, region: str) -> None:
        """Best effort after a failed launch: leave nothing behind (listing reports leftovers)."""
        try:
            await self._delete_replica(names, service, region)
        except SkyctlError:
            pass

    async def _with_endpoint(
        self, vm: dict[str, Any], ip: dict[str, Any] | None = None
    ) -> Instance:
        tags = vm.get("tags") or {}
        if ip is None:
            ip = await self.arm.get("ip", Names(tags.get(TAG_INSTANCE, vm["name"])).ip)
        return instance_from_vm(vm, endpoint=_endpoint(ip, tags), now=self._clock.now())

    # ---- terminate ---------------------------------------------------------------------------

    async def terminate(self, instance_id: str) -> None:
        if not _INSTANCE_ID.match(instance_id):
            return  # not a name we create: nothing of ours to delete
        names = Names(instance_id)
        node_names = [instance_id]
        self._terminating.add(instance_id)
        try:
            found = None
            for kind, name in (("vm", names.vm), ("nic", names.nic), ("ip", names.ip)):
                found = await self.arm.get(kind, name)
                if found is not None:
                    break
            if found is None or nodes.TAG_NODES in (found.get("tags") or {}):
                # a multi-node replica's workers go with its head (even when it is gone)
                workers = await find_nodes(self.arm, instance_id)
                node_names += sorted(set(workers) - {instance_id})
                found = found or next(iter(workers.values()), None)
            self._terminating.update(node_names)
            if found is None:
                return
            service = (found.get("tags") or {}).get(TAG_SERVICE, "")
            region = str(found.get("location", ""))
            await self._delete_replica([Names(n) for n in node_names], service, region)
        finally:
            self._terminating.difference_update(node_names)

    async def _delete_replica(self, all_names: Sequence[Names], service: str, region: str) -> None:
        for names in all_names:
            await self.arm.delete("vm", names.vm)
            await self.arm.delete("nic", names.nic)
            await self.arm.delete("ip", names.ip)
        if service and region:
            async with self._lock(service, region):
                nics = await self.arm.list("nic")
                if not any(
                    owned_by(n.get("tags"), service) and n.get("location") == region for n in nics
                ):
                    await self.arm.delete("nsg", nsg_name(service, region), ignore=_NSG_IN_USE)

    # ---- listing -----------------------------------------------------------------------------

    async def list_instances(self, service: str) -> Sequence[Instance]:
        vms = await self.arm.list("vm")
        ips = await self.arm.list("ip")
        nics = await self.arm.list("nic")
        by_name = {str((ip.get("tags") or {}).get(TAG_INSTANCE)): ip for ip in ips}
        now = self._clock.now()
        out: dict[str, Instance] = {}  # one per VM (node)
        node_of: dict[str, nodes.Node] = {}  # the nodes of multi-node replicas
        for res in [*vms, *nics, *ips]:
            tags = res.get("tags") or {}
            if owned_by(tags, service) and (node := nodes.node_of(tags, str)) is not None:
                node_of[tags[TAG_INSTANCE]] = node
        for vm in vms:
            tags = vm.get("tags") or {}
            if not owned_by(tags, service):
                continue
            inst = instance_from_vm(
                vm, endpoint=_endpoint(by_name.get(tags[TAG_INSTANCE]), tags), now=now
            )
            deleting = (
                str(vm.get("properties", {}).get("provisioningState", "")).lower() == "deleting"
            )
            ours = inst.instance_id in self._terminating or inst.instance_id in self._launching
            if deleting and inst.spot and not ours:
                inst = _replace_state(
                    inst, InstanceState.PREEMPTED, "spot VM evicted (being deleted)"
                )
            out[inst.instance_id] = inst
        unattached = {  # NICs no VM ever had: a launch cut before its VM
            str((n.get("tags") or {}).get(TAG_INSTANCE))
            for n in nics
            if not n.get("properties", {}).get("virtualMachine")
            and str(n.get("properties", {}).get("provisioningState", "")).lower() != "deleting"
        }
        for res in [*nics, *ips]:  # network resources whose VM is gone
            tags = res.get("tags") or {}
            if not owned_by(tags, service) or tags[TAG_INSTANCE] in out:
                continue
            name = tags[TAG_INSTANCE]
            state, detail, cut = _leftover(
                launching=name in self._launching,
                terminating=name in self._terminating,
                nic=name in unattached,
                spot=tags.get(TAG_SPOT) == "true",
            )
            out[name] = instance_from_tags(
                tags,
                str(res.get("location", "")),
                state=state,
                detail=detail,
                endpoint=None,
                created_at=now,
                launch_failed=cut,
            )
        replicas = nodes.group(
            ((node_of.get(i.instance_id), i) for i in out.values()), launching=self._launching
        )
        self._emit_preemptions(replicas, now)
        return sorted(replicas, key=lambda i: (i.replica_id, i.instance_id))

    def _emit_preemptions(self, instances: Any, now: float) -> None:
        for inst in instances:
            if (
                inst.state is InstanceState.PREEMPTED
                and inst.instance_id not in self._preempted_seen
            ):
                self._preempted_seen.add(inst.instance_id)
                self._emit(
                    InstanceEvent(
                        InstanceEventKind.PREEMPTED,
                        inst.service,
                        inst.replica_id,
                        inst.instance_id,
                        inst.location,
                        now,
                        inst.detail,
                    )
                )

    async def list_services(self) -> Sequence[str]:
        found: set[str] = set()
        for kind in ("vm", "nic", "ip"):
            for res in await self.arm.list(kind):
                tags = res.get("tags") or {}
                if owned_by(tags):
                    found.add(tags[TAG_SERVICE])
        return sorted(found)

    async def close(self) -> None:
        for task in list(self._cleanups):  # what is left is listed by the next controller
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.arm.close()


def _endpoint(ip: dict[str, Any] | None, tags: Mapping[str, str]) -> str | None:
    address = (ip or {}).get("properties", {}).get("ipAddress")
    port = tags.get(TAG_PORT)
    return f"http://{address}:{port}" if address and port else None


def _leftover(
    *, launching: bool, terminating: bool, nic: bool, spot: bool
) -> tuple[InstanceState, str, bool]:
    """State, detail and ``launch_failed`` of a replica whose VM is gone but whose
    NIC or public IP is still there (``nic``: a NIC that is not being deleted and
    no VM holds).

    An eviction (policy Delete) deletes the VM with its NIC (``deleteOption:
    Delete``) and leaves the public IP; a NIC still there that no VM holds is a
    launch cut short before its VM was made (the controller killed, the call
    cut): not a preemption."""
    if launching:
        return InstanceState.PENDING, "launching", False
    if terminating:
        return InstanceState.TERMINATED, "being deleted", False
    if nic:
        return (
            InstanceState.FAILED,
            "launch cut short: network interface left, its VM never created",
            True,
        )
    if spot:
        return InstanceState.PREEMPTED, "spot VM evicted (VM gone)", False
    return InstanceState.FAILED, "VM gone; network resources left", False


def _replace_state(inst: Instance, state: InstanceState, detail: str) -> Instance:
    return replace(inst, state=state, detail=detail, endpoint=None)


def check(config: Mapping[str, Any] | None, *, credential: Any | None = None) -> tuple[bool, str]:
    """Whether Azure is usable: configuration valid and a token obtainable (never printed)."""
    try:
        cfg = parse_config(config)
    except ConfigError as e:
        return False, str(e)
    scope = cfg.credential_scope or "https://management.azure.com/.default"
    try:
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        credential.get_token(scope)
    except Exception:  # any failure of the chain means: not configured
        return False, f"azure: no usable credentials; {CREDENTIAL_HINT}"
    return True, f"azure: subscription {cfg.subscription_id}, resource group {cfg.resource_group}"
