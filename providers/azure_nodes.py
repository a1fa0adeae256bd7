"""Multi-node replicas on Azure (``num_nodes`` N > 1): N VMs in one zone, one replica.

Node k is the VM :func:`providers.nodes.node_name` (head's name, k) with its
own NIC and public IP, all tagged with :func:`providers.nodes.node_tags` (the
head's name, the rank, N). Azure gives a NIC its private address when the NIC
is created, so the provider creates every node's NIC first, then every VM with
a boot script that exports the node's rank and the addresses, head first
(:func:`providers.nodes.node_exports`): no node has to wait for its peers'
addresses. A node that fails to be created fails the launch, and every node's
resources are deleted. The nodes share the region's virtual network, which
Azure's default rule ``AllowVnetInBound`` opens between them on any port; the
service's NSG still opens only the service port to the world. Listing groups
VMs by tag (:func:`providers.nodes.group`); the head's terminate deletes every
node tagged with it.
"""

from __future__ import annotations

from typing import Any

from providers import nodes
from providers.azure_arm import ArmClient
from providers.azure_resources import TAG_INSTANCE

__all__ = ["find_nodes", "private_ip"]


def private_ip(nic: dict[str, Any]) -> str:
    """The private address Azure gave the NIC (its first IP configuration)."""
    configs = nic.get("properties", {}).get("ipConfigurations") or [{}]
    return str(configs[0].get("properties", {}).get("privateIPAddress") or "")


async def find_nodes(arm: ArmClient, head: str) -> dict[str, dict[str, Any]]:
    """node name -> one of its resources (VM, NIC or public IP) tagged with ``head``."""
    found: dict[str, dict[str, Any]] = {}
    for kind in ("vm", "nic", "ip"):
        for res in await arm.list(kind):
            tags = res.get("tags") or {}
            if tags.get(nodes.TAG_HEAD) == head and tags.get(TAG_INSTANCE):
                found.setdefault(str(tags[TAG_INSTANCE]), res)
    return found
