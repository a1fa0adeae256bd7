"""Multi-node replicas on Kubernetes (``num_nodes`` N > 1): N pods, one replica.

Node k is the pod :func:`providers.nodes.node_name` (head pod's name, k),
labelled with :func:`providers.nodes.node_tags` (the head pod's name, the rank,
N), created with the others at once in the same context and namespace, with a
preferred pod affinity to the head's zone. A pod's IP exists only once it is
scheduled, so each pod mounts its annotation :data:`ANNOTATION_IPS` through a
downward API volume (kubelet refreshes such files when the annotation changes)
and its command first waits for that file (:func:`shape`); the provider writes
the annotation (the pods' IPs, head first, spaces between) on every pod of the
replica once all have an IP (:func:`to_publish`, a JSON merge patch). A pod
still without it is listed PENDING. Listing groups pods by label
(:func:`providers.nodes.group`); only the head gets a Service (the replica's
endpoint); the head's terminate deletes every pod labelled with it. Pods reach
each other by pod IP on any port (the cluster network; a NetworkPolicy of the
namespace may restrict that).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from providers import nodes
from providers.kubernetes_build import instance_id, view_pod
from skyctl.errors import ConfigError
from skyctl.types import Instance, InstanceState

__all__ = ["ANNOTATION_IPS", "listed", "node_of", "shape", "to_publish"]

ANNOTATION_IPS = "skyctl.dev/node-ips"
_DIR = "/etc/skyctl"
_VOLUME = "skyctl-nodes"
_RANK_VARS = ("SKYPILOT_NODE_RANK", "SKYPILOT_SETUP_NODE_RANK")


def node_of(ctx: str, pod: Mapping[str, Any]) -> nodes.Node | None:
    meta = pod.get("metadata") or {}
    ns = str(meta.get("namespace") or "")
    return nodes.node_of(meta.get("labels") or {}, lambda head: instance_id(ctx, ns, head))


def shape(body: dict[str, Any], *, head: str, rank: int, count: int) -> dict[str, Any]:
    """Make the pod body of a one-node replica node ``rank`` of ``count`` (see the module doc)."""
    body["metadata"]["labels"].update(nodes.node_tags(head, rank, count))
    spec = body["spec"]
    container = spec["containers"][0]
    command = container.get("command")
    if not command:
        raise ConfigError(
            "run: a multi-node kubernetes replica needs `run` (it waits for its peers)"
        )
    wait = nodes.wait_for_ips(rank, f"cat {_DIR}/node-ips 2>/dev/null")
    container["command"] = [*command[:2], f"{wait}\n{command[2]}", *command[3:]]
    for env in container.get("env") or ():
        if env["name"] in _RANK_VARS:
            env["value"] = str(rank)
    container.setdefault("volumeMounts", []).append(
        {"name": _VOLUME, "mountPath": _DIR, "readOnly": True}
    )
    field = f"metadata.annotations['{ANNOTATION_IPS}']"
    spec.setdefault("volumes", []).append(
        {
            "name": _VOLUME,
            "downwardAPI": {"items": [{"path": "node-ips", "fieldRef": {"fieldPath": field}}]},
        }
    )
    term = {
        "labelSelector": {"matchLabels": {nodes.TAG_HEAD: head}},
        "topologyKey": "topology.kubernetes.io/zone",
    }
    spec.setdefault("affinity", {})["podAffinity"] = {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": term}
        ]
    }
    return body


def to_publish(pods: Sequence[Mapping[str, Any]], count: int) -> tuple[str, list[str]]:
    """(the node list, the pods still lacking it) for one replica's pods; nothing to
    write until all ``count`` pods have an IP."""
    by_rank = {int((p["metadata"].get("labels") or {}).get(nodes.TAG_RANK, -1)): p for p in pods}
    ips = [view_pod(by_rank[k]).pod_ip if k in by_rank else None for k in range(count)]
    if not all(ips):
        return "", []
    value = " ".join(str(ip) for ip in ips)
    lacking = [
        str(p["metadata"]["name"])
        for p in pods
        if (p["metadata"].get("annotations") or {}).get(ANNOTATION_IPS) != value
    ]
    return value, lacking


def listed(pod: Mapping[str, Any], inst: Instance, why: str | None = None) -> Instance:
    """A running node that has not got the node list yet is still PENDING (``why``: the
    reason it could not be written, when it could not)."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if inst.state is InstanceState.RUNNING and not annotations.get(ANNOTATION_IPS):
        detail = why or "waiting for the replica's node list"
        return replace(inst, state=InstanceState.PENDING, endpoint=None, detail=detail)
    return inst
