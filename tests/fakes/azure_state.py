"""The state behind the fake Azure Resource Manager API (no HTTP here).

A small, stateful model of the resources skyctl's Azure provider uses, written
from the ARM REST reference: ``Microsoft.Compute/virtualMachines`` and
``Microsoft.Network`` ``publicIPAddresses``, ``networkInterfaces``,
``networkSecurityGroups`` and ``virtualNetworks`` (with ``subnets``).

Every mutating call returns an :class:`Operation` (a long-running operation the
client polls); it completes after ``lro_polls`` status polls. Errors are
:class:`ArmError` with the ARM ``{"error": {"code", "message"}}`` body.

Injection hooks (called by tests): :meth:`ArmState.fail_allocation`,
:meth:`ArmState.exceed_quota`, :meth:`ArmState.evict`. Throttling lives in the
HTTP layer (``tests/fakes/azure_server.py``).
"""

from __future__ import annotations

import copy
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

COMPUTE = "microsoft.compute"
NETWORK = "microsoft.network"
#: (namespace, type) -> the type name ARM reports
TYPES = {
    (COMPUTE, "virtualmachines"): "Microsoft.Compute/virtualMachines",
    (NETWORK, "publicipaddresses"): "Microsoft.Network/publicIPAddresses",
    (NETWORK, "networkinterfaces"): "Microsoft.Network/networkInterfaces",
    (NETWORK, "networksecuritygroups"): "Microsoft.Network/networkSecurityGroups",
    (NETWORK, "virtualnetworks"): "Microsoft.Network/virtualNetworks",
}

CAPACITY_MESSAGES = {
    "AllocationFailed": "Allocation failed. We do not have sufficient capacity for the requested "
    "VM size in this region.",
    "ZonalAllocationFailed": "Allocation failed. We do not have sufficient capacity for the "
    "requested VM size in this zone.",
    "OverconstrainedAllocationRequest": "Allocation failed. VM(s) with the following constraints "
    "cannot be allocated, because the condition is too restrictive.",
    "SkuNotAvailable": "The requested VM size for resource is currently not available in "
    "location. Please try another size or deploy to a different location or different zone.",
}


class ArmError(Exception):
    """An ARM error response: HTTP status and the ``error`` object."""

    def __init__(
        self, status: int, code: str, message: str, *, retry_after: int | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


@dataclass
class Operation:
    """A long-running operation: polled until it reaches a terminal status."""

    op_id: str
    namespace: str
    location: str
    resource_id: str
    method: str  # PUT | DELETE
    polls_left: int
    failure: ArmError | None = None
    status: str = "InProgress"  # InProgress | Succeeded | Failed


@dataclass
class AllocationFailure:
    code: str
    sync: bool  # answer the PUT itself (409) instead of failing the operation


@dataclass
class ArmState:
    subscription: str = "00000000-0000-0000-0000-000000000000"
    resource_groups: set[str] = field(default_factory=lambda: {"skyctl"})
    lro_polls: int = 1
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)  # lower id -> resource
    custom_data: dict[str, str] = field(default_factory=dict)  # lower VM id -> base64 text
    operations: dict[str, Operation] = field(default_factory=dict)
    evictions: list[str] = field(default_factory=list)
    _allocation_failures: dict[tuple[str, str], AllocationFailure] = field(default_factory=dict)
    _quota_regions: set[str] = field(default_factory=set)
    _ips: itertools.count[int] = field(default_factory=lambda: itertools.count(10))

    # ---- injection hooks -------------------------------------------------------------

    def fail_allocation(
        self,
        region: str,
        zone: str = "",
        code: str = "ZonalAllocationFailed",
        *,
        sync: bool = False,
    ) -> None:
        """New VMs in ``region`` (``zone``, or any zone when empty) fail with ``code``."""
        self._allocation_failures[(region.lower(), zone)] = AllocationFailure(code, sync)

    def fail_allocation_of(self, vm_name: str, code: str = "ZonalAllocationFailed") -> None:
        """The VM named ``vm_name`` (one node of a replica) fails to allocate with ``code``."""
        self._allocation_failures[("vm", vm_name)] = AllocationFailure(code, False)

    def clear_allocation_failures(self) -> None:
        self._allocation_failures.clear()

    def exceed_quota(self, region: str) -> None:
        """New VMs in ``region`` are refused with the ARM quota error."""
        self._quota_regions.add(region.lower())

    def evict(self, vm_name: str, *, deallocate: bool = False) -> None:
        """Evict a spot VM: delete it (eviction policy Delete) or deallocate it."""
        vm = self.find("virtualMachines", vm_name)
        if vm is None:
            raise KeyError(vm_name)
        self.evictions.append(vm_name)
        if deallocate:
            vm["properties"]["instanceView"]["statuses"] = [
                {"code": "ProvisioningState/succeeded"},
                {"code": "PowerState/deallocated"},
            ]
        else:
            self._remove_vm(vm["id"].lower())

    # ---- queries for tests -------------------------------------------------------------

    def find(self, type_name: str, name: str) -> dict[str, Any] | None:
        for res in self.resources.values():
            if res["type"].split("/")[1].lower() == type_name.lower() and res["name"] == name:
                return res
        return None

    def names(self, type_name: str) -> list[str]:
        return sorted(
            r["name"]
            for r in self.resources.values()
            if r["type"].split("/")[1].lower() == type_name.lower()
        )

    # ---- ARM verbs ---------------------------------------------------------------------

    def resource_id(self, rg: str, namespace: str, type_: str, name: str) -> str:
        arm_type = self._arm_type(namespace, type_)
        return f"/subscriptions/{self.subscription}/resourceGroups/{rg}/providers/{arm_type}/{name}"

    def get(self, rid: str) -> dict[str, Any]:
        res = self.resources.get(rid.lower())
        if res is None:
            raise ArmError(404, "ResourceNotFound", f"The Resource '{rid}' was not found.")
        return res

    def list(self, rg: str, namespace: str, type_: str) -> list[dict[str, Any]]:
        self._check_rg(rg)
        prefix = self.resource_id(rg, namespace, type_, "").lower()
        return [r for k, r in sorted(self.resources.items()) if k.startswith(prefix)]

    def put(
        self, rg: str, namespace: str, type_: str, name: str, body: dict[str, Any]
    ) -> tuple[int, Operation]:
        """Create or update; returns (201 created | 200 updated, the operation)."""
        self._check_rg(rg)
        arm_type = self._arm_type(namespace, type_)
        rid = self.resource_id(rg, namespace, type_, name)
        if not isinstance(body, dict) or not body.get("location"):
            raise ArmError(
                400, "LocationRequired", "The location property is required for this definition."
            )
        tags = body.get("tags") or {}
        bad = [k for k in tags if set(k) & set("<>%&\\?/") or len(k) > 512]
        if bad or len(tags) > 50 or len({k.lower() for k in tags}) < len(tags):
            raise ArmError(400, "InvalidTag", f"The tags {bad or sorted(tags)} are not valid.")
        existing = self.resources.get(rid.lower())
        res = copy.deepcopy(body)
        res.update(id=rid, name=name, type=arm_type, location=body["location"].lower())
        res.setdefault("tags", {})
        props = res.setdefault("properties", {})
        failure: ArmError | None = None
        if arm_type.endswith("virtualMachines"):
            failure = self._put_vm(rid, res, existing)
        elif arm_type.endswith("networkInterfaces"):
            self._put_nic(res, existing)
        elif arm_type.endswith("publicIPAddresses"):
            props["ipAddress"] = (existing or {}).get("properties", {}).get("ipAddress") or (
                f"20.0.0.{next(self._ips)}"
            )
            props.setdefault("publicIPAllocationMethod", "Static")
        elif arm_type.endswith("virtualNetworks"):
            for subnet in props.get("subnets", []):
                subnet["id"] = f"{rid}/subnets/{subnet['name']}"
                subnet.setdefault("properties", {})["provisioningState"] = "Succeeded"
        elif arm_type.endswith("networkSecurityGroups"):
            for rule in props.get("securityRules", []):
                rule["id"] = f"{rid}/securityRules/{rule['name']}"
            props["networkInterfaces"] = (
                (existing or {}).get("properties", {}).get("networkInterfaces", [])
            )
        props["provisioningState"] = "Creating" if existing is None else "Updating"
        self.resources[rid.lower()] = res
        op = self._operation(namespace, res["location"], rid, "PUT", failure)
        return (201 if existing is None else 200), op

    def delete(self, rg: str, namespace: str, type_: str, name: str) -> Operation | None:
        """Start a deletion; None when there is nothing to delete (ARM answers 204)."""
        self._check_rg(rg)
        rid = self.resource_id(rg, namespace, type_, name)
        res = self.resources.get(rid.lower())
        if res is None:
            return None
        props = res["properties"]
        if res["type"].endswith("networkInterfaces") and props.get("virtualMachine"):
            raise ArmError(
                400,
                "NicInUse",
                f"Network Interface {rid} is used by existing resource "
                f"{props['virtualMachine']['id']}. In order to delete the network interface, "
                "it must be dissociated from the resource.",
            )
        if res["type"].endswith("publicIPAddresses") and props.get("ipConfiguration"):
            raise ArmError(
                400,
                "PublicIPAddressCannotBeDeleted",
                f"Public IP address {rid} can not be deleted since "
                "it is still allocated to resource " + props["ipConfiguration"]["id"],
            )
        if res["type"].endswith("networkSecurityGroups") and props.get("networkInterfaces"):
            raise ArmError(
                400,
                "InUseNetworkSecurityGroupCannotBeDeleted",
                f"Network security group {rid} cannot be deleted because it is in use by "
                + props["networkInterfaces"][0]["id"],
            )
        props["provisioningState"] = "Deleting"
        return self._operation(namespace, res["location"], rid, "DELETE", None)

    def poll(self, op_id: str) -> Operation:
        op = self.operations.get(op_id)
        if op is None:
            raise ArmError(404, "OperationNotFound", f"The operation '{op_id}' was not found.")
        if op.status == "InProgress":
            op.polls_left -= 1
            if op.polls_left <= 0:
                self._complete(op)
        return op

    def settle(self) -> None:
        """Complete every operation still in progress (as if the client had polled)."""
        for op in list(self.operations.values()):
            if op.status == "InProgress":
                self._complete(op)

    # ---- internals -----------------------------------------------------------------------

    def _arm_type(self, namespace: str, type_: str) -> str:
        arm_type = TYPES.get((namespace.lower(), type_.lower()))
        if arm_type is None:
            raise ArmError(
                400,
                "InvalidResourceType",
                f"The resource type '{type_}' could not be found in the namespace '{namespace}'.",
            )
        return arm_type

    def _check_rg(self, rg: str) -> None:
        if rg.lower() not in {g.lower() for g in self.resource_groups}:
            raise ArmError(
                404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found."
            )

    def _operation(
        self, namespace: str, location: str, rid: str, method: str, failure: ArmError | None
    ) -> Operation:
        op = Operation(uuid.uuid4().hex, namespace, location, rid, method, self.lro_polls, failure)
        self.operations[op.op_id] = op
        return op

    def _ref(self, ref: Any, what: str) -> dict[str, Any]:
        rid = ref.get("id", "") if isinstance(ref, dict) else ""
        res = self.resources.get(rid.lower()) if rid else None
        if res is None and "/subnets/" in rid.lower():
            vnet_id, _, subnet = rid.rpartition("/subnets/")
            vnet = self.resources.get(vnet_id.lower())
            subnets = (vnet or {}).get("properties", {}).get("subnets", [])
            res = next((s for s in subnets if s["name"] == subnet), None)
        if res is None:
            raise ArmError(
                400,
                "InvalidResourceReference",
                f"Resource {rid or '<missing id>'} referenced by {what} was not found.",
            )
        return res

    def _put_nic(self, res: dict[str, Any], existing: dict[str, Any] | None) -> None:
        props = res["properties"]
        configs = props.get("ipConfigurations") or []
        if not configs:
            raise ArmError(
                400, "InvalidRequestFormat", "A network interface needs ipConfigurations."
            )
        old = {  # an update keeps the addresses (Dynamic: the next free one of the subnet)
            c.get("name"): c.get("properties", {}).get("privateIPAddress")
            for c in (existing or {}).get("properties", {}).get("ipConfigurations", [])
        }
        used = {
            c.get("properties", {}).get("privateIPAddress")
            for key, r in self.resources.items()
            if r["type"].lower() == "microsoft.network/networkinterfaces"
            and key != res["id"].lower()
            for c in r["properties"].get("ipConfigurations", [])
        }
        free = (f"10.200.0.{n}" for n in range(4, 255) if f"10.200.0.{n}" not in used)
        for cfg in configs:
            cfg_props = cfg.setdefault("properties", {})
            cfg["id"] = f"{res['id']}/ipConfigurations/{cfg.get('name', 'ipconfig')}"
            self._ref(cfg_props.get("subnet"), f"{res['id']} ipConfigurations.subnet")
            cfg_props["privateIPAddress"] = old.get(cfg.get("name")) or next(free)
            if cfg_props.get("publicIPAddress"):
                pip = self._ref(cfg_props["publicIPAddress"], f"{res['id']} publicIPAddress")
                pip["properties"]["ipConfiguration"] = {"id": cfg["id"]}
        nsg_ref = props.get("networkSecurityGroup")
        if nsg_ref:
            nsg = self._ref(nsg_ref, f"{res['id']} networkSecurityGroup")
            users = nsg["properties"].setdefault("networkInterfaces", [])
            if not any(u["id"].lower() == res["id"].lower() for u in users):
                users.append({"id": res["id"]})
        props["virtualMachine"] = (existing or {}).get("properties", {}).get("virtualMachine")

    def _put_vm(
        self, rid: str, res: dict[str, Any], existing: dict[str, Any] | None
    ) -> ArmError | None:
        props = res["properties"]
        if not props.get("hardwareProfile", {}).get("vmSize"):
            raise ArmError(
                400, "InvalidParameter", "Required parameter 'hardwareProfile.vmSize' is missing."
            )
        if props.get("priority") == "Spot" and not props.get("evictionPolicy"):
            raise ArmError(
                400, "InvalidParameter", "evictionPolicy is required for Spot priority VMs."
            )
        custom = props.get("osProfile", {}).pop("customData", None)
        if existing is not None:
            old = existing["properties"]
            if custom is not None and custom != self.custom_data.get(rid.lower()):
                raise ArmError(
                    409,
                    "PropertyChangeNotAllowed",
                    "Changing property 'customData' is not allowed.",
                )
            props["instanceView"] = old.get("instanceView")
            props["vmId"] = old.get("vmId")
            props["timeCreated"] = old.get("timeCreated")
            return None
        location, zones = res["location"], res.get("zones") or [""]
        if location in self._quota_regions:
            raise ArmError(
                409,
                "OperationNotAllowed",
                "Operation could not be completed as it results in exceeding "
                f"approved Total Regional Cores quota. Additional details - Location: {location}, "
                "Current Limit: 10, Current Usage: 10, Additional Required: 8.",
            )
        failure_rule = (
            self._allocation_failures.get((location, zones[0]))
            or self._allocation_failures.get((location, ""))
            or self._allocation_failures.get(("vm", res["name"]))
        )
        failure = None
        if failure_rule is not None:
            failure = ArmError(
                409,
                failure_rule.code,
                CAPACITY_MESSAGES.get(failure_rule.code, "Allocation failed."),
            )
            if failure_rule.sync:
                raise failure
        nics = props.get("networkProfile", {}).get("networkInterfaces") or []
        if not nics:
            raise ArmError(400, "InvalidParameter", "At least one network interface is required.")
        for ref in nics:
            nic = self._ref(ref, f"{rid} networkProfile")
            attached = nic["properties"].get("virtualMachine")
            if attached and attached["id"].lower() != rid.lower():
                raise ArmError(
                    409, "NicInUse", f"Network interface {nic['id']} is in use by {attached['id']}."
                )
            nic["properties"]["virtualMachine"] = {"id": rid}
        if custom is not None:
            self.custom_data[rid.lower()] = custom
        props["vmId"] = str(uuid.uuid4())
        props["timeCreated"] = "2024-01-01T00:00:00+00:00"
        props["instanceView"] = {"statuses": [{"code": "ProvisioningState/creating"}]}
        return failure

    def _complete(self, op: Operation) -> None:
        res = self.resources.get(op.resource_id.lower())
        if op.failure is not None:
            op.status = "Failed"
            if res is not None:
                res["properties"]["provisioningState"] = "Failed"
                res["properties"]["instanceView"] = {  # as ARM: the reason in the view
                    "statuses": [
                        {
                            "code": f"ProvisioningState/failed/{op.failure.code}",
                            "level": "Error",
                            "displayStatus": "Provisioning failed",
                            "message": op.failure.message,
                        }
                    ]
                }
            return
        op.status = "Succeeded"
        if res is None:
            return
        if op.method == "DELETE":
            if res["type"].endswith("virtualMachines"):
                self._remove_vm(op.resource_id.lower())
            else:
                self._remove_network(op.resource_id.lower())
            return
        res["properties"]["provisioningState"] = "Succeeded"
        if res["type"].endswith("virtualMachines"):
            res["properties"]["instanceView"] = {
                "statuses": [
                    {"code": "ProvisioningState/succeeded"},
                    {"code": "PowerState/running"},
                ]
            }

    def _remove_vm(self, key: str) -> None:
        vm = self.resources.pop(key, None)
        self.custom_data.pop(key, None)
        if vm is None:
            return
        for ref in vm["properties"].get("networkProfile", {}).get("networkInterfaces", []):
            nic = self.resources.get(ref["id"].lower())
            if nic is None:
                continue
            nic["properties"]["virtualMachine"] = None
            if ref.get("properties", {}).get("deleteOption") == "Delete":
                self._remove_network(ref["id"].lower())

    def _remove_network(self, key: str) -> None:
        res = self.resources.pop(key, None)
        if res is None or not res["type"].endswith("networkInterfaces"):
            return
        for cfg in res["properties"].get("ipConfigurations", []):
            pip_ref = cfg.get("properties", {}).get("publicIPAddress")
            pip = self.resources.get(pip_ref["id"].lower()) if pip_ref else None
            if pip is not None:
                pip["properties"].pop("ipConfiguration", None)
        nsg_ref = res["properties"].get("networkSecurityGroup")
        nsg = self.resources.get(nsg_ref["id"].lower()) if nsg_ref else None
        if nsg is not None:
            users = nsg["properties"].get("networkInterfaces", [])
            nsg["properties"]["networkInterfaces"] = [u for u in users if u["id"].lower() != key]
