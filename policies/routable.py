"""Which READY replicas the router uses: the one routing decision, for the controller and plan.

A replica is routable when it is READY and the provider has not said it is
gone. Among those, replicas without an interruption notice ("calm") are
preferred: a replica about to be preempted gets traffic only while no calm one
is left, so its in-flight requests are few when the cloud takes it.

During a blue-green update (``serve update --mode blue_green``) a
:class:`Cutover` gates versions: only replicas older than ``version`` are
routed until ``target`` replicas of ``version`` (or newer) are READY; then only
those, all at once, so traffic is never mixed. With no older replica left to
route, the new ones serve whatever their count (serving beats refusing).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from policies.model import Cutover, ReplicaView
from skyctl.lifecycle import ROUTABLE

__all__ = ["Cutover", "routable"]


def routable(
    replicas: Iterable[ReplicaView],
    excluded: Collection[int] = (),
    cutover: Cutover | None = None,
) -> tuple[int, ...]:
    """Ids of the replicas to route to (ascending), leaving out ``excluded`` ones."""
    ready = [
        r
        for r in replicas
        if r.status in ROUTABLE and not r.unreachable and r.replica_id not in excluded
    ]
    if cutover is not None:
        new = [r for r in ready if r.version >= cutover.version]
        old = [r for r in ready if r.version < cutover.version]
        ready = old if old and len(new) < cutover.target else new
    calm = [r for r in ready if r.interruption_at is None]
    return tuple(sorted(r.replica_id for r in (calm or ready)))
