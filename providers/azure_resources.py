"""What skyctl creates on Azure, as plain ARM JSON, and how it reads it back.

Pure functions, no SDK and no I/O, so they are testable on their own:

- :class:`Names`: the deterministic resource names of one replica launch
  (the idempotency key: the same client token always names the same VM, NIC and
  public IP);
- the request bodies of the virtual network, network security group, public IP,
  network interface and virtual machine (spot: ``priority: Spot``,
  ``evictionPolicy: Delete``, ``billingProfile.maxPrice: -1``);
- :func:`instance_from_vm`: an ARM VM (with its instance view) as an
  :class:`~skyctl.types.Instance` (provisioning ``Failed``: FAILED with
  ``launch_failed``, never PREEMPTED, whatever its power state).
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from skyctl.errors import ConfigError
from skyctl.types import Instance, InstanceState, Location

TAG_SERVICE = "skyctl-service"
TAG_REPLICA = "skyctl-replica"
TAG_VERSION = "skyctl-version"
TAG_INSTANCE = "skyctl-instance"
TAG_SPOT = "skyctl-spot"
TAG_PRICE = "skyctl-price"
TAG_ZONE = "skyctl-zone"
TAG_PORT = "skyctl-port"

#: Ubuntu 22.04 LTS (gen2) for CPU types; the Data Science VM HPC image (NVIDIA drivers) for GPUs
DEFAULT_CPU_IMAGE = "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest"
DEFAULT_GPU_IMAGE = "microsoft-dsvm:ubuntu-hpc:2204:latest"
DEFAULT_DISK_GB = 128
ADMIN_USER = "skyctl"
VNET_PREFIX = "10.200.0.0/16"
SUBNET_PREFIX = "10.200.0.0/18"
CUSTOM_DATA_LIMIT = 87_380  # bytes of base64 ARM accepts for osProfile.customData
RULE_PRIORITY_BASE = 1000

_SLUG = re.compile(r"[^a-z0-9-]+")


def slug(text: str, limit: int) -> str:
    """Lowercase letters, digits and dashes, at most ``limit`` characters."""
    return _SLUG.sub("-", text.lower()).strip("-")[:limit].strip("-") or "x"


@dataclass(frozen=True)
class Names:
    """The resource names of one replica launch; ``vm`` is also the instance id."""

    vm: str

    @classmethod
    def for_launch(cls, service: str, replica_id: int, client_token: str) -> Names:
        digest = hashlib.sha256(client_token.encode("utf-8")).hexdigest()[:10]
        return cls(f"sky-{slug(service, 30)}-r{replica_id}-{digest}")

    @property
    def nic(self) -> str:
        return f"{self.vm}-nic"

    @property
    def ip(self) -> str:
        return f"{self.vm}-ip"


def vnet_name(region: str) -> str:
    return f"skyctl-vnet-{region}"


def nsg_name(service: str, region: str) -> str:
    return f"skyctl-{slug(service, 40)}-{region}-nsg"


def arm_id(subscription: str, rg: str, arm_type: str, name: str) -> str:
    return f"/subscriptions/{subscription}/resourceGroups/{rg}/providers/{arm_type}/{name}"


def tags_for(
    service: str,
    replica_id: int,
    version: int,
    names: Names,
    *,
    spot: bool,
    price: float,
    zone: str,
    port: int,
) -> dict[str, str]:
    return {
        TAG_SERVICE: service,
        TAG_REPLICA: str(replica_id),
        TAG_VERSION: str(version),
        TAG_INSTANCE: names.vm,
        TAG_SPOT: "true" if spot else "false",
        TAG_PRICE: f"{price:.6f}",
        TAG_ZONE: zone,
        TAG_PORT: str(port),
    }


def vnet_body(region: str) -> dict[str, Any]:
    return {
        "location": region,
        "tags": {"skyctl-managed": "true"},
        "properties": {
            "addressSpace": {"addressPrefixes": [VNET_PREFIX]},
            "subnets": [{"name": "skyctl", "properties": {"addressPrefix": SUBNET_PREFIX}}],
        },
    }


def nsg_body(
    service: str, region: str, ports: set[int], existing_rules: list[dict[str, Any]]
) -> dict[str, Any]:
    """An NSG allowing inbound TCP to ``ports`` only (Azure's default rules deny the rest).

    Rules already present (other versions' ports) are kept with their priorities.
    """
    rules = [dict(r) for r in existing_rules if r.get("name", "").startswith("skyctl-port-")]
    have = {r["name"] for r in rules}
    used = {int(r.get("properties", {}).get("priority", 0)) for r in rules}
    for port in sorted(ports):
        name = f"skyctl-port-{port}"
        if name in have:
            continue
        priority = next(p for p in range(RULE_PRIORITY_BASE, 4097) if p not in used)
        used.add(priority)
        rules.append(
            {
                "name": name,
                "properties": {
                    "protocol": "Tcp",
                    "sourcePortRange": "*",
                    "destinationPortRange": str(port),
                    "sourceAddressPrefix": "*",
                    "destinationAddressPrefix": "*",
                    "access": "Allow",
                    "priority": priority,
                    "direction": "Inbound",
                },
            }
        )
    return {
        "location": region,
        "tags": {TAG_SERVICE: service},
        "properties": {"securityRules": [_bare_rule(r) for r in rules]},
    }


def _bare_rule(rule: dict[str, Any]) -> dict[str, Any]:
    props = {k: v for k, v in rule.get("properties", {}).items() if k != "provisioningState"}
    return {"name": rule["name"], "properties": props}


def ip_body(region: str, zone: str, tags: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "location": region,
        "tags": tags,
        "sku": {"name": "Standard", "tier": "Regional"},
        "properties": {"publicIPAllocationMethod": "Static", "publicIPAddressVersion": "IPv4"},
    }
    if zone:
        body["zones"] = [zone]
    return body


def nic_body(
    region: str, tags: dict[str, str], subnet_id: str, ip_id: str, nsg_id: str
) -> dict[str, Any]:
    return {
        "location": region,
        "tags": tags,
        "properties": {
            "networkSecurityGroup": {"id": nsg_id},
            "ipConfigurations": [
                {
                    "name": "ipconfig",
                    "properties": {
                        "subnet": {"id": subnet_id},
                        "privateIPAllocationMethod": "Dynamic",
                        "publicIPAddress": {"id": ip_id},
                    },
                }
            ],
        },
    }


def image_reference(image_id: str) -> dict[str, str]:
    """``publisher:offer:sku:version`` (a marketplace URN) or an ARM image resource id."""
    if image_id.startswith("/subscriptions/"):
        return {"id": image_id}
    parts = image_id.split(":")
    if len(parts) != 4 or not all(parts):
        raise ConfigError(
            f"resources.image_id: {image_id!r} is not an Azure image "
            "(publisher:offer:sku:version, or an image resource id /subscriptions/...)"
        )
    publisher, offer, sku, version = parts
    return {"publisher": publisher, "offer": offer, "sku": sku, "version": version}


@dataclass(frozen=True)
class VmSettings:
    """The per-launch choices that shape the VM body."""

    region: str
    zone: str
    vm_size: str
    spot: bool
    image_id: str
    disk_gb: int
    ssh_public_key: str
    bootstrap: str  # the boot script (plain text)


def vm_body(s: VmSettings, names: Names, tags: dict[str, str], nic_id: str) -> dict[str, Any]:
    custom_data = base64.b64encode(s.bootstrap.encode("utf-8")).decode("ascii")
    if len(custom_data) > CUSTOM_DATA_LIMIT:
        raise ConfigError(
            f"setup + run + envs are too long for Azure custom data ({len(custom_data)} bytes "
            f"base64, at most {CUSTOM_DATA_LIMIT}); move them into a script in the image or workdir"
        )
    props: dict[str, Any] = {
        "hardwareProfile": {"vmSize": s.vm_size},
        "storageProfile": {
            "imageReference": image_reference(s.image_id),
            "osDisk": {
                "createOption": "FromImage",
                "deleteOption": "Delete",
                "diskSizeGB": s.disk_gb,
                "managedDisk": {"storageAccountType": "Premium_LRS"},
            },
        },
        "osProfile": {
            "computerName": names.vm[:64],
            "adminUsername": ADMIN_USER,
            "customData": custom_data,
            "linuxConfiguration": {
                "disablePasswordAuthentication": True,
                "ssh": {
                    "publicKeys": [
                        {
                            "path": f"/home/{ADMIN_USER}/.ssh/authorized_keys",
                            "keyData": s.ssh_public_key,
                        }
                    ]
                },
            },
        },
        "networkProfile": {
            "networkInterfaces": [
                {"id": nic_id, "properties": {"primary": True, "deleteOption": "Delete"}}
            ]
        },
    }
    if s.spot:
        props["priority"] = "Spot"
        props["evictionPolicy"] = "Delete"
        props["billingProfile"] = {"maxPrice": -1}
    else:
        props["priority"] = "Regular"
    body: dict[str, Any] = {"location": s.region, "tags": tags, "properties": props}
    if s.zone:
        body["zones"] = [s.zone]
    return body


def _codes(vm: dict[str, Any]) -> list[str]:
    statuses = (vm.get("properties", {}).get("instanceView") or {}).get("statuses") or []
    return [str(st.get("code", "")) for st in statuses]


def _failure(vm: dict[str, Any]) -> str:
    """Why provisioning failed, from the instance view's ``ProvisioningState/failed/<code>``
    status and its message (one line)."""
    statuses = (vm.get("properties", {}).get("instanceView") or {}).get("statuses") or []
    for st in statuses:
        code = str(st.get("code", ""))
        if code.lower().startswith("provisioningstate/failed"):
            reason = code.split("/", 2)[2] if code.count("/") >= 2 else ""
            text = " ".join(str(st.get("message") or "").split())[:300]
            return ": ".join(x for x in ("provisioning failed", reason, text) if x)
    return "provisioning failed"


def vm_state(vm: dict[str, Any], *, spot: bool) -> tuple[InstanceState, str]:
    """The instance state of an ARM VM with its instance view, and a detail line."""
    props = vm.get("properties", {})
    provisioning = str(props.get("provisioningState", "")).lower()
    power = next((c.split("/", 1)[1] for c in _codes(vm) if c.startswith("PowerState/")), "")
    if provisioning == "failed":
        return InstanceState.FAILED, _failure(vm)
    if provisioning == "deleting":  # (its power state goes to stopped on the way)
        return InstanceState.TERMINATED, "being deleted"
    # stopped or deallocated by someone else: not serving, yet the VM (and its disk, and
    # while only stopped its compute) stays until deleted, so teardown must delete it
    if power in ("deallocated", "deallocating"):
        if spot:
            return InstanceState.PREEMPTED, f"spot VM evicted (power state {power})"
        return InstanceState.FAILED, f"stopped (power state {power})"
    if power in ("stopped", "stopping"):
        return InstanceState.FAILED, f"stopped (power state {power})"
    if provisioning == "succeeded" and power == "running":
        return InstanceState.RUNNING, ""
    return (
        InstanceState.PENDING,
        f"provisioning {provisioning or 'unknown'}, power {power or 'unknown'}",
    )


def _epoch(text: str | None, default: float) -> float:
    if not text:
        return default
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default


def owned_by(tags: dict[str, str] | None, service: str | None = None) -> bool:
    """Whether a resource carries our tags (for ``service``, when given)."""
    if not tags or TAG_SERVICE not in tags or TAG_INSTANCE not in tags:
        return False
    return service is None or tags[TAG_SERVICE] == service


def instance_from_tags(
    tags: dict[str, str],
    region: str,
    *,
    state: InstanceState,
    detail: str,
    endpoint: str | None,
    created_at: float,
    launch_failed: bool = False,
) -> Instance:
    try:
        replica_id, version = int(tags[TAG_REPLICA]), int(tags[TAG_VERSION])
        price = float(tags.get(TAG_PRICE) or 0.0)
    except (KeyError, ValueError):
        replica_id, version, price = -1, 0, 0.0
    return Instance(
        instance_id=tags[TAG_INSTANCE],
        service=tags[TAG_SERVICE],
        replica_id=replica_id,
        version=version,
        location=Location("azure", region, tags.get(TAG_ZONE, "")),
        spot=tags.get(TAG_SPOT) == "true",
        state=state,
        endpoint=endpoint,
        price=price,
        created_at=created_at,
        detail=detail,
        launch_failed=launch_failed,
    )


def instance_from_vm(vm: dict[str, Any], *, endpoint: str | None, now: float) -> Instance:
    tags = vm.get("tags") or {}
    spot = tags.get(TAG_SPOT) == "true" or vm.get("properties", {}).get("priority") == "Spot"
    state, detail = vm_state(vm, spot=spot)
    created = _epoch(vm.get("properties", {}).get("timeCreated"), now)
    return instance_from_tags(
        tags,
        str(vm.get("location", "")),
        state=state,
        detail=detail,
        endpoint=endpoint if state in (InstanceState.RUNNING, InstanceState.PENDING) else None,
        created_at=created,
        # provisioning Failed: the VM was never made (we never update one), whatever
        # its power state says: a failed launch, not an eviction
        launch_failed=str(vm.get("properties", {}).get("provisioningState", "")).lower()
        == "failed",
    )
