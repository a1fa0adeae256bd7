"""Multi-node replicas on AWS (``num_nodes`` N > 1): N instances, one replica.

A replica's N instances come from ONE ``run_instances`` call (``MinCount =
MaxCount = N``, one client token, one zone: EC2 launches all or none). Then
each is tagged ``skyctl-node-rank`` (its ``AmiLaunchIndex``: 0 is the head),
``skyctl-head`` (the head's instance id, which is the replica's instance id to
the controller) and ``skyctl-node-ips-<k>`` (the nodes' private addresses,
head first, spaces between, in chunks under EC2's 256-character tag limit).
Every instance carries ``skyctl-nodes`` = N from launch.

On the node, the boot script (:data:`NODE_SCRIPT`, with instance tags in
the metadata service) waits for those tags and exports SkyPilot's
``SKYPILOT_NODE_RANK`` and ``SKYPILOT_NODE_IPS`` (one address a line).

Listing folds a replica's instances into one :class:`Instance`: the head's
id, endpoint and price; PREEMPTED when any node was preempted, FAILED when any
node ended otherwise or is missing (the detail names the node), PENDING while
any node is pending. Terminating the head's id terminates every node.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from providers import nodes
from providers.nodes import TAG_HEAD, TAG_NODES, TAG_RANK
from skyctl.errors import ConfigError
from skyctl.types import Instance

__all__ = [
    "NODE_SCRIPT",
    "TAG_HEAD",
    "TAG_IPS",
    "TAG_NODES",
    "TAG_RANK",
    "check_labels",
    "fold",
    "node_tags",
    "nodes_of",
    "tagged",
]
TAG_IPS = "skyctl-node-ips"
_METADATA_TAG = re.compile(r"[A-Za-z0-9+\-=.,_:@]+")  # EC2's rule with metadata tags on
_TAG_LIMIT = 256

#: bash for the boot script: waits for the provider's tags, then exports the node variables
NODE_SCRIPT = rf"""
md=http://169.254.169.254/latest
tag() {{
  token=$(curl -s -m 2 -X PUT "$md/api/token" -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')
  curl -s -f -m 2 -H "X-aws-ec2-metadata-token: $token" "$md/meta-data/tags/instance/$1"
}}
until rank=$(tag {TAG_RANK}) && [ -n "$rank" ] && ips=$(tag {TAG_IPS}-0) && [ -n "$ips" ]; do
  echo "skyctl: waiting for this replica's node list"; sleep 2
done
k=1; while more=$(tag {TAG_IPS}-$k) && [ -n "$more" ]; do ips="$ips $more"; k=$((k+1)); done
ips=$(printf '%s\n' $ips)
export SKYPILOT_NODE_RANK=$rank SKYPILOT_SETUP_NODE_RANK=$rank
export SKYPILOT_NODE_IPS="$ips" SKYPILOT_SETUP_NODE_IPS="$ips"
"""


def node_tags(raws: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, str]]]:
    """instance id -> the tags that make one replica of ``raws`` (one launch's instances)."""
    ordered = sorted(raws, key=lambda r: int(r.get("AmiLaunchIndex", 0)))
    head = str(ordered[0]["InstanceId"])
    ips = [str(r.get("PrivateIpAddress") or "") for r in ordered]
    chunks: list[str] = []
    for ip in ips:
        if chunks and len(chunks[-1]) + 1 + len(ip) <= _TAG_LIMIT:
            chunks[-1] += " " + ip
        else:
            chunks.append(ip)
    shared = [{"Key": TAG_HEAD, "Value": head}]
    shared += [{"Key": f"{TAG_IPS}-{i}", "Value": c} for i, c in enumerate(chunks)]
    return {
        str(r["InstanceId"]): [{"Key": TAG_RANK, "Value": str(rank)}, *shared]
        for rank, r in enumerate(ordered)
    }


def tagged(raws: Sequence[Mapping[str, Any]]) -> bool:
    """Whether every instance of the launch already carries its node tags."""
    return all(TAG_HEAD in _tags(r) and TAG_RANK in _tags(r) for r in raws)


def nodes_of(raw: Mapping[str, Any]) -> int:
    try:
        return int(_tags(raw).get(TAG_NODES, "1"))
    except ValueError:
        return 1


def fold(pairs: Sequence[tuple[Mapping[str, Any], Instance | None]]) -> list[Instance]:
    """One instance per replica from ``(raw, instance)`` pairs of one listing.

    Single-node instances pass through. A multi-node replica's nodes (grouped
    by client token) become its head's instance with the worst node's state
    (:func:`providers.nodes.fold`); ``None`` instances are nodes that are gone (terminated)."""
    out: list[Instance] = []
    groups: dict[str, list[tuple[Mapping[str, Any], Instance | None]]] = {}
    for raw, inst in pairs:
        if nodes_of(raw) <= 1:
            if inst is not None:
                out.append(inst)
            continue
        groups.setdefault(_tags(raw).get("skyctl-token", ""), []).append((raw, inst))
    for group in groups.values():
        folded = _fold_one(group)
        if folded is not None:
            out.append(folded)
    return out


def _rank(raw: Mapping[str, Any]) -> int:
    try:
        return int(_tags(raw).get(TAG_RANK, raw.get("AmiLaunchIndex", 0)))
    except ValueError:
        return 0


def _fold_one(group: list[tuple[Mapping[str, Any], Instance | None]]) -> Instance | None:
    group.sort(key=lambda p: _rank(p[0]))
    head_id = _tags(group[0][0]).get(TAG_HEAD) or str(group[0][0]["InstanceId"])
    n = nodes_of(group[0][0])
    ranks = {_rank(r): i for r, i in group if i is not None}
    return nodes.fold(head_id, n, ranks, complete=len(group) >= n or tagged_all(group))


def tagged_all(group: Sequence[tuple[Mapping[str, Any], Instance | None]]) -> bool:
    return tagged([r for r, _ in group])


def _tags(raw: Mapping[str, Any]) -> dict[str, str]:
    return {str(t["Key"]): str(t["Value"]) for t in raw.get("Tags", []) or []}


def check_labels(labels: Mapping[str, str]) -> None:
    """ConfigError naming the first label EC2 refuses on a multi-node replica: its
    nodes read their tags from the instance metadata, and with that on, tag names
    allow only letters, digits and ``+ - = . , _ : @`` (no spaces, no ``/``)."""
    for name in labels:
        if not _METADATA_TAG.fullmatch(name) or name in (".", "..", "_index"):
            raise ConfigError(
                f"resources.labels.{name}: with num_nodes > 1 the nodes read their tags from "
                "the instance metadata, where AWS tag names allow only letters, digits and "
                "+ - = . , _ : @ (no spaces or /)"
            )
