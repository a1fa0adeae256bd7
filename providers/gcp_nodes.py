"""Multi-node replicas on GCP (``num_nodes`` N > 1): N VMs in one zone, one replica.

Node k is the instance :func:`providers.nodes.node_name` (head's name, k),
inserted with its own ``requestId`` and the labels of
:func:`providers.nodes.node_tags` (the head's name, the rank, N); its boot
script exports its rank. Internal addresses exist only once every insert is
DONE, so the provider then writes them (head first, spaces between) into each
node's metadata item :data:`META_IPS` (``setMetadata``, with the current
fingerprint); the boot script (:func:`node_script`) waits for that item on the
metadata server and exports ``SKYPILOT_NODE_IPS``. A node without the item is
listed PENDING. A launch cut short before writing it (a controller killed
between the inserts and ``setMetadata``) is finished by the next listing
(:func:`finish`): the next controller adopts the replica as listed and does
not launch it again. Listing groups nodes by label (:func:`providers.nodes.group`); the
terminate of the head's id deletes every node found by the ``skyctl-head``
label. A firewall rule lets the service's instances reach each other on any
port (as SkyPilot's clusters do).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Any

from providers import nodes
from providers.gcp_api import ComputeApi, compute_v1, operation_error
from providers.gcp_build import instance_id
from providers.gcp_instances import metadata_value
from skyctl.errors import SkyctlError
from skyctl.types import Instance, InstanceState

__all__ = ["META_IPS", "finish", "listed", "node_of", "node_script", "publish"]

log = logging.getLogger("skyctl.providers.gcp")

META_IPS = "skyctl-node-ips"
_MD = "http://metadata.google.internal/computeMetadata/v1/instance/attributes"


def node_script(rank: int) -> str:
    """The boot script's part that sets node ``rank``'s variables (see the module doc)."""
    return nodes.wait_for_ips(rank, f"curl -sf -H 'Metadata-Flavor: Google' {_MD}/{META_IPS}")


def node_of(inst: Any, zone: str) -> nodes.Node | None:
    return nodes.node_of(dict(inst.labels), lambda head: instance_id(zone, head))


def listed(inst: Any, zone: str, found: Instance) -> tuple[nodes.Node | None, Instance]:
    """A listed node and where it belongs; a node still without the node list is PENDING."""
    node = node_of(inst, zone)
    if node is not None and found.state is InstanceState.RUNNING:
        if metadata_value(inst, META_IPS) is None:
            found = replace(
                found,
                state=InstanceState.PENDING,
                endpoint=None,
                detail="waiting for the replica's node list",
            )
    return node, found


async def publish(api: ComputeApi, project: str, zone: str, insts: Sequence[Any]) -> None:
    """Write every node's internal address (``insts`` by rank) into each node's metadata."""
    ips = " ".join(i.network_interfaces[0].network_i_p for i in insts)
    for inst in insts:
        if metadata_value(inst, META_IPS) == ips:
            continue  # a retried launch: already written
        items = [
            {"key": it.key, "value": it.value}
            for it in (inst.metadata.items if inst.metadata else ())
            if it.key != META_IPS
        ]
        body = {
            "fingerprint": inst.metadata.fingerprint,
            "items": [*items, {"key": META_IPS, "value": ips}],
        }
        what = f"set the node list of {zone}/{inst.name}"
        op = await api.call(
            api.instances.set_metadata_unary,
            project=project,
            zone=zone,
            instance=inst.name,
            metadata_resource=ComputeApi.message(compute_v1.Metadata, body),
            what=what,
            **api.options(),
        )
        op = await api.wait_zone_op(project, zone, op, what=what, location=None)
        err = operation_error(op, what, None)
        if err is not None:
            raise err


async def finish(
    api: ComputeApi, project: str, rows: Sequence[tuple[Any, str]], launching: Collection[str]
) -> bool:
    """Write the node list of every replica in ``rows`` (VM, zone) whose nodes all
    exist with an address but miss it (its launch was cut short), except replicas
    whose launch is in flight here (head ids in ``launching``). Whether any was written."""
    groups: dict[str, dict[int, Any]] = {}
    zones: dict[str, str] = {}
    for inst, zone in rows:
        node = node_of(inst, zone)
        if node is None or node.head in launching:
            continue
        if inst.status in ("PROVISIONING", "STAGING", "RUNNING"):
            groups.setdefault(node.head, {})[node.rank] = inst
            zones[node.head] = zone
    wrote = False
    for head, by_rank in groups.items():
        n = node_count(by_rank)
        if n < 2 or sorted(by_rank) != list(range(n)):
            continue  # a node is gone or still being inserted: nothing to write yet
        insts = [by_rank[k] for k in range(n)]
        if not all(i.network_interfaces for i in insts):
            continue
        if all(metadata_value(i, META_IPS) is not None for i in insts):
            continue
        if not all(i.network_interfaces[0].network_i_p for i in insts):
            continue  # the addresses come with the inserts' completion
        try:
            await publish(api, project, zones[head], insts)
            wrote = True
        except SkyctlError as e:  # the replica stays PENDING; the next listing tries again
            log.warning("GCP: cannot write the node list of %s: %s", head, e)
    return wrote


def node_count(by_rank: dict[int, Any]) -> int:
    """N of the replica whose listed nodes are ``by_rank`` (from any node's labels)."""
    inst = next(iter(by_rank.values()))
    try:
        return int(dict(inst.labels).get(nodes.TAG_NODES, "1"))
    except ValueError:
        return 1
