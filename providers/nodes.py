"""What every cloud provider's multi-node replicas share (``num_nodes`` N > 1).

A replica of N nodes is N instances (VMs, pods) launched together in one
location. Node 0 is the head: its id is the replica's instance id to the
controller and its address the replica's endpoint. Each node carries, in its
cloud's labels or tags:

- :data:`TAG_NODES` = N, :data:`TAG_RANK` = its rank, :data:`TAG_HEAD` = the
  head's name (so a listing, even after a controller restart, groups the nodes
  into replicas, and ``terminate`` of the head finds every node).

Node k > 0 of a replica whose head is named ``h`` is named ``h-n<k>``
(:func:`node_name`), so a retried launch finds the same nodes.

- :func:`fold` makes one :class:`Instance` of a replica's nodes: the head's
  id, endpoint and price; PREEMPTED when any node was preempted, FAILED when
  any node ended otherwise or is missing (``detail`` names the node), PENDING
  while any node is pending, TERMINATED when every node is being deleted.
- :func:`group` folds a listing of nodes into replicas; single nodes pass.
- :func:`launch_all` launches every node and, when any is refused, deletes
  every node before raising: a partial launch leaves no instance behind.
- :func:`wait_for_ips` is the bash a node runs to learn its peers' addresses
  when the cloud tells it only after every node exists (GCP metadata,
  Kubernetes annotations); :func:`node_exports` exports them.

AWS keeps its own shape (one ``run_instances`` for all nodes, see
:mod:`providers.aws_nodes`) and folds with :func:`fold` too.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from providers.replica_env import NODE_IP_VARS
from skyctl.errors import SkyctlError
from skyctl.types import Instance, InstanceState

__all__ = [
    "TAG_HEAD",
    "TAG_NODES",
    "TAG_RANK",
    "Node",
    "fold",
    "group",
    "launch_all",
    "node_exports",
    "node_name",
    "node_of",
    "node_tags",
    "wait_for_ips",
]

TAG_NODES = "skyctl-nodes"
TAG_RANK = "skyctl-node-rank"
TAG_HEAD = "skyctl-head"

T = TypeVar("T")


@dataclass(frozen=True)
class Node:
    """Where one listed node belongs: its replica's head id, its rank, the node count."""

    head: str
    rank: int
    nodes: int


def node_name(head: str, rank: int) -> str:
    """The name of node ``rank`` of the replica whose head is named ``head``."""
    return head if rank == 0 else f"{head}-n{rank}"


def node_tags(head: str, rank: int, nodes: int) -> dict[str, str]:
    """The labels/tags that make a node part of a replica (values valid on every cloud)."""
    return {TAG_NODES: str(nodes), TAG_RANK: str(rank), TAG_HEAD: head}


def node_of(tags: Mapping[str, str], head_id: Callable[[str], str]) -> Node | None:
    """The node a resource's tags describe; None for a one-node replica.

    ``head_id`` turns the head's name into the head's instance id."""
    try:
        nodes, rank = int(tags.get(TAG_NODES, "1")), int(tags.get(TAG_RANK, "0"))
    except ValueError:
        return None
    head = tags.get(TAG_HEAD)
    if nodes <= 1 or not head:
        return None
    return Node(head_id(head), rank, nodes)


def fold(
    head_id: str, nodes: int, ranks: Mapping[int, Instance], *, complete: bool = True
) -> Instance | None:
    """One instance for the replica whose listed nodes are ``ranks`` (rank -> node).

    ``complete``: every node was launched, so a rank not listed is a node that
    is gone (else one still being launched). None when no node is left."""
    if not ranks:
        return None
    base = replace(ranks.get(0) or ranks[min(ranks)], instance_id=head_id)
    if all(i.state is InstanceState.TERMINATED for i in ranks.values()):
        return replace(base, state=InstanceState.TERMINATED, endpoint=None, interruption_at=None)
    for state in (InstanceState.PREEMPTED, InstanceState.FAILED, InstanceState.TERMINATED):
        lost = sorted(k for k, i in ranks.items() if i.state is state)
        if lost:
            k = lost[0]
            how = "preempted" if state is InstanceState.PREEMPTED else f"ended ({ranks[k].detail})"
            if state is InstanceState.TERMINATED:
                state = InstanceState.FAILED
            lost_node = _lost(base, state, f"node {k} of {nodes} {how}")
            return replace(lost_node, launch_failed=ranks[k].launch_failed)
    missing = sorted(set(range(nodes)) - set(ranks))
    if missing and complete:
        return _lost(base, InstanceState.FAILED, f"node {missing[0]} of {nodes} is gone")
    if missing or any(i.state is InstanceState.PENDING for i in ranks.values()):
        return replace(base, state=InstanceState.PENDING, endpoint=None)
    notice = [i.interruption_at for i in ranks.values() if i.interruption_at is not None]
    return replace(base, interruption_at=min(notice)) if notice else base


def group(
    listed: Iterable[tuple[Node | None, Instance]], *, launching: Iterable[str] = ()
) -> list[Instance]:
    """One instance per replica of a listing of nodes (``None``: a one-node replica).

    ``launching``: head ids whose launch is in flight (their missing nodes are pending)."""
    out: list[Instance] = []
    replicas: dict[str, tuple[int, dict[int, Instance]]] = {}
    for node, inst in listed:
        if node is None:
            out.append(inst)
        else:
            replicas.setdefault(node.head, (node.nodes, {}))[1][node.rank] = inst
    busy = set(launching)
    for head, (n, ranks) in replicas.items():
        folded = fold(head, n, ranks, complete=head not in busy)
        if folded is not None:
            out.append(folded)
    return out


async def launch_all(
    nodes: int,
    launch: Callable[[int], Awaitable[T]],
    rollback: Callable[[], Awaitable[None]] | None = None,
) -> list[T]:
    """``launch(rank)`` for every rank at once; when any fails, once every call has
    ended, ``rollback()`` (delete every node, idempotent) and raise the first
    failure, so no node is left behind."""
    results = await asyncio.gather(*(launch(k) for k in range(nodes)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        if rollback is not None:
            try:
                await rollback()
            except SkyctlError:
                pass  # the listing still shows what is left; the controller terminates it
        raise errors[0]
    return [r for r in results if not isinstance(r, BaseException)]


def node_exports(rank: int, ips: Sequence[str] | None = None) -> str:
    """bash exporting SkyPilot's node variables for node ``rank``: the addresses
    ``ips`` (head first) when known at render time, else those in ``$ips``
    (spaces or newlines between)."""
    first, *others = NODE_IP_VARS
    lines = [f"ips={shlex.quote(' '.join(ips))}"] if ips is not None else []
    lines += [
        f"export SKYPILOT_NODE_RANK={rank} SKYPILOT_SETUP_NODE_RANK={rank}",
        f"export {first}=\"$(printf '%s\\n' $ips)\"",
        *(f'export {var}="${first}"' for var in others),
    ]
    return "\n".join(lines)


def wait_for_ips(rank: int, fetch: str) -> str:
    """bash that waits until ``fetch`` (a command) prints the node list, then exports it."""
    return "\n".join(
        [
            f'until ips=$({fetch}) && [ -n "$ips" ]; do',
            '  echo "skyctl: waiting for this replica\'s node list"; sleep 2',
            "done",
            node_exports(rank),
        ]
    )


def _lost(base: Instance, state: InstanceState, why: str) -> Instance:
    return replace(
        base,
        state=state,
        launch_failed=False,
        endpoint=None,
        interruption_at=None,
        detail=f"{why}: the replica is lost with it",
    )
