"""The environment SkyPilot gives a task, which replicas of SkyServe specs expect.

Every provider adds :func:`skypilot_env` to a replica's environment, after the
spec's envs and secrets (ours win, as SkyPilot's own variables do):

- ``PYTHONUNBUFFERED=1``: Python output reaches the replica's log as it is
  written, not when the process exits (SkyPilot runs tasks with it);
- ``SKYPILOT_NUM_GPUS_PER_NODE`` (and ``SKYPILOT_SETUP_NUM_GPUS_PER_NODE``):
  the accelerators of the offering placed on, rounded up (0 without);
- ``SKYPILOT_NODE_RANK`` (0 is the head), ``SKYPILOT_NUM_NODES`` (the spec's
  ``num_nodes``), ``SKYPILOT_NODE_IPS`` (every node's address, one a line, the
  head first) and ``SKYPILOT_SETUP_NODE_RANK``/``SKYPILOT_SETUP_NODE_IPS`` for
  setup (``node_ips``: ``127.0.0.1`` per node on this machine; clouds and
  Kubernetes fill in a one-node replica's address where it runs, see
  :data:`NODE_IP_VARS`, and a multi-node replica's addresses on each node,
  see ``providers.nodes``);
- ``SKYPILOT_SERVE_REPLICA_ID``, ``SKYPILOT_SERVICE_NAME``, ``SKYPILOT_TASK_ID``,
  ``SKYPILOT_USER`` (who runs skyctl) and ``SKYPILOT_CLUSTER_INFO`` (JSON:
  cluster name, cloud, region, zone).
"""

from __future__ import annotations

import getpass
import json
import math
from collections.abc import Sequence

from providers.base import LaunchRequest

__all__ = ["NODE_IP_VARS", "gpus_per_node", "skypilot_env"]

#: the variables whose value is the node's address; providers that learn it only
#: on the node (clouds at boot, Kubernetes from the pod) set them there
NODE_IP_VARS: tuple[str, ...] = ("SKYPILOT_NODE_IPS", "SKYPILOT_SETUP_NODE_IPS")


def gpus_per_node(accelerators: str) -> int:
    """``"A100:8"`` -> 8; ``"T4:0.5"`` -> 1 (rounded up, as SkyPilot); ``""`` -> 0."""
    total = 0.0
    for part in accelerators.split(","):
        name, _, count = part.strip().rpartition(":")
        if not name:
            continue
        try:
            total += float(count)
        except ValueError:
            total += 1
    return math.ceil(total)


def skypilot_env(
    request: LaunchRequest,
    *,
    node_ip: str | None,
    rank: int = 0,
    node_ips: Sequence[str] | None = None,
) -> dict[str, str]:
    """SkyPilot's task variables for node ``rank`` of this launch.

    ``node_ips`` (the head first) for a multi-node replica; else ``node_ip``, the
    one node's address (None: set on the node)."""
    gpus = str(gpus_per_node(request.offering.accelerators))
    location = request.offering.location
    cluster = f"{request.service}-{request.replica_id}"
    env = {
        "PYTHONUNBUFFERED": "1",
        "SKYPILOT_NUM_GPUS_PER_NODE": gpus,
        "SKYPILOT_SETUP_NUM_GPUS_PER_NODE": gpus,
        "SKYPILOT_NODE_RANK": str(rank),
        "SKYPILOT_SETUP_NODE_RANK": str(rank),
        "SKYPILOT_NUM_NODES": str(request.spec.num_nodes),
        "SKYPILOT_SERVE_REPLICA_ID": str(request.replica_id),
        "SKYPILOT_SERVICE_NAME": request.service,
        "SKYPILOT_TASK_ID": f"skyctl-{cluster}-v{request.version}",
        "SKYPILOT_USER": _user(),
        "SKYPILOT_CLUSTER_INFO": json.dumps(
            {
                "cluster_name": cluster,
                "cloud": location.cloud,
                "region": location.region,
                "zone": location.zone or None,
            }
        ),
    }
    if node_ips is not None:
        env.update(dict.fromkeys(NODE_IP_VARS, "\n".join(node_ips)))
    elif node_ip is not None:
        env.update(dict.fromkeys(NODE_IP_VARS, node_ip))
    return env


def _user() -> str:
    """Who runs skyctl (SkyPilot: who launched the task)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        return "skyctl"
