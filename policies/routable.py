"""Which READY replicas the router uses: the one routing decision, for the controller and plan.

A replica is routable when it is READY and the provider has not said it is
gone. Among those, replicas without an interruption notice ("calm") are
preferred: a replica about to be preempted gets traffic only while no calm one
is left, so its in-flight requests are few when the cloud takes it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from policies.model import ReplicaView
from skyctl.lifecycle import ROUTABLE


def routable(replicas: Iterable[ReplicaView], excluded: Collection[int] = ()) -> tuple[int, ...]:
    """Ids of the replicas to route to (ascending), leaving out ``excluded`` ones."""
    ready = [
        r
        for r in replicas
        if r.status in ROUTABLE and not r.unreachable and r.replica_id not in excluded
    ]
    calm = [r for r in ready if r.interruption_at is None]
    return tuple(sorted(r.replica_id for r in (calm or ready)))
