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

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from skyctl.types import Instance, InstanceState

TAG_NODES = "skyctl-nodes"
TAG_RANK = "skyctl-node-rank"
TAG_HEAD = "skyctl-head"
TAG_IPS = "skyctl-node-ips"
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
    by client token) become its head's instance with the worst node's state;
    ``None`` instances are nodes that are gone (terminated)."""
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
    n = nodes_of(group[0][0])
    group.sort(key=lambda p: _rank(p[0]))
    live = [(r, i) for r, i in group if i is not None]
    if not live:
        return None  # every node gone: so is the replica
    head_id = _tags(group[0][0]).get(TAG_HEAD) or str(group[0][0]["InstanceId"])
    head = next((i for r, i in live if str(r["InstanceId"]) == head_id), None)
    base = replace(head or live[0][1], instance_id=head_id)
    ranks = {_rank(r): i for r, i in live}
    for state in (InstanceState.PREEMPTED, InstanceState.FAILED, InstanceState.TERMINATED):
        lost = [(k, i) for k, i in ranks.items() if i is not None and i.state is state]
        if lost:
            k, inst = lost[0]
            how = "preempted" if state is InstanceState.PREEMPTED else f"ended ({inst.detail})"
            if state is InstanceState.TERMINATED:
                state = InstanceState.FAILED
            return _lost(base, state, f"node {k} of {n} {how}")
    missing = sorted(set(range(n)) - set(ranks)) if len(group) >= n or tagged_all(group) else []
    if missing:
        return _lost(base, InstanceState.FAILED, f"node {missing[0]} of {n} is gone")
    if any(i.state is InstanceState.PENDING for i in ranks.values() if i is not None):
        return replace(base, state=InstanceState.PENDING, endpoint=None)
    return base


def tagged_all(group: Sequence[tuple[Mapping[str, Any], Instance | None]]) -> bool:
    return tagged([r for r, _ in group])


def _lost(base: Instance, state: InstanceState, why: str) -> Instance:
    return replace(
        base,
        state=state,
        endpoint=None,
        interruption_at=None,
        detail=f"{why}: the replica is lost with it",
    )


def _tags(raw: Mapping[str, Any]) -> dict[str, str]:
    return {str(t["Key"]): str(t["Value"]) for t in raw.get("Tags", []) or []}
