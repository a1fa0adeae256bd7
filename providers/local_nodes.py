"""The worker nodes of a multi-node local replica (``num_nodes`` > 1).

A replica of N nodes is N processes on this machine, each its own process
group, all running the spec's ``setup`` then ``run`` with SkyPilot's node
variables: rank 0 is the head (the record's ``pid``/``port``, the replica's
endpoint), ranks 1..N-1 are workers, kept in the record's ``workers`` as
``{"rank", "pid", "start", "port"}``. Every node's address is ``127.0.0.1``,
so ``SKYPILOT_NODE_IPS`` is that line N times, the head's first. Each worker
gets a free port of its own as ``$PORT`` (they share one machine); its output
goes to the replica's log file with the head's.

The local provider treats the loss of any node as the replica's loss: a worker
that exits marks the replica FAILED (naming the node), a preemption kills every
node, and terminating the replica stops every node's group.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from providers import local_process
from providers.base import LaunchRequest
from providers.local_process import ReplicaProcess
from providers.local_records import (
    Record,
    free_port,
    group_alive,
    pid_alive,
    proc_start_time,
    signal_group,
)
from providers.replica_env import skypilot_env

NODE_IP = "127.0.0.1"


def node_ips(request: LaunchRequest) -> list[str]:
    """Every node's address, the head first (all this machine)."""
    return [NODE_IP] * request.spec.num_nodes


def worker_key(instance_id: str, rank: int) -> str:
    """The provider's key for a worker's process and waiter (the head's is the id)."""
    return f"{instance_id}#node{rank}"


async def start_workers(
    request: LaunchRequest,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str,
    log_path: Path,
    avoid_ports: set[int],
) -> list[tuple[dict[str, Any], ReplicaProcess]]:
    """Start ranks 1..N-1 (in worker threads); on any failure (or a cancel) stop those
    started and raise OSError (or the cancel). Returns each worker's record entry and process."""
    started: list[tuple[dict[str, Any], ReplicaProcess]] = []
    ips = node_ips(request)
    try:
        for rank in range(1, request.spec.num_nodes):
            port = free_port(avoid_ports)
            avoid_ports.add(port)
            node_env = {**env, **skypilot_env(request, node_ip=None, rank=rank, node_ips=ips)}
            node_env.update(PORT=str(port), SKYCTL_NODE_RANK=str(rank))
            proc = await local_process.start(argv, cwd=cwd, env=node_env, log_path=log_path)
            start = proc_start_time(proc.pid)
            started.append(({"rank": rank, "pid": proc.pid, "start": start, "port": port}, proc))
    except BaseException:  # an OSError, or the launch cancelled: no record will name them
        for entry, _ in started:
            signal_group(entry["pid"], signal.SIGKILL)
        raise
    return started


def lost_worker(rec: Record, procs: Mapping[str, ReplicaProcess]) -> str | None:
    """Why the replica lost a worker ("node 1 of 2 (a worker) ended"), None while all run."""
    for w in rec.workers:
        proc = procs.get(worker_key(rec.instance_id, int(w["rank"])))
        if proc is not None:
            code = proc.returncode
            if code is None:
                continue
            return lost(rec, int(w["rank"]), f"exited with code {code}")
        if not pid_alive(int(w["pid"]), w.get("start")):
            return lost(rec, int(w["rank"]), "ended")
    return None


def lost(rec: Record, rank: int, how: str) -> str:
    return f"node {rank} of {len(rec.workers) + 1} (a worker) {how}: the replica is lost with it"


def signal_workers(rec: Record, sig: signal.Signals) -> None:
    for w in rec.workers:
        signal_group(int(w["pid"]), sig)


def workers_gone(rec: Record) -> bool:
    return not any(
        pid_alive(int(w["pid"]), w.get("start")) or group_alive(int(w["pid"])) for w in rec.workers
    )
