"""What every spot/on-demand placement policy receives and returns, and shared helpers.

A placement policy is a pure function ``(PlacementContext) -> PlacementResult``.
:mod:`policies.reconcile` has already applied health checks, the autoscaler
and the rolling update; the policy decides only how many spot and on-demand
replicas of the current version to keep, where new spot ones go, and which
surplus ones to drain. Policies are looked up by name in
:mod:`policies.registry`.

Helpers here are the pieces several policies share: SkyServe's scale-down
order, SpotHedge's ACTIVE/PREEMPTED location bookkeeping, the cheapest spot
offering per location and the on-demand offering to use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from policies.model import (
    LocationEvent,
    LocationEventKind,
    LocationState,
    ReplicaView,
    ServiceObservation,
    Terminate,
)
from skyctl.lifecycle import EndReason, ReplicaStatus
from skyctl.spec import ResourceCandidate
from skyctl.types import Location, Offering

READY = ReplicaStatus.READY

# SkyServe's scale-down order: replicas in earlier stages go first
# (they may be far from ready), then older versions, then the newest launches.
_SCALE_DOWN_RANK = {
    ReplicaStatus.PENDING: 0,
    ReplicaStatus.PROVISIONING: 1,
    ReplicaStatus.STARTING: 2,
    ReplicaStatus.NOT_READY: 3,
    ReplicaStatus.READY: 4,
}


@dataclass(frozen=True)
class PlacementContext:
    obs: ServiceObservation
    now: float
    target: int  # the autoscaler's target, without over-provisioning
    overprovision: int  # num_overprovision
    base_ondemand: int  # base_ondemand_fallback_replicas
    dynamic_ondemand: bool  # dynamic_ondemand_fallback
    replicas: tuple[ReplicaView, ...]  # current version, counted towards targets
    spot_in_use: tuple[Location, ...]  # locations of every counted spot replica (all versions)
    spot_offers: Mapping[Location, Offering]  # cheapest spot offering per location
    ondemand_offer: Offering | None  # where an on-demand replica would go
    state: Mapping[str, Any]  # this policy's part of policy_state
    max_launches: int  # per kind in one plan: max_replicas + num_overprovision

    @property
    def final_target(self) -> int:
        return self.target + self.overprovision


@dataclass
class PlacementResult:
    spot_launches: list[tuple[Offering, str]] = field(default_factory=list)
    ondemand_launches: list[tuple[Offering, str]] = field(default_factory=list)
    terminations: list[Terminate] = field(default_factory=list)
    location_states: dict[Location, LocationState] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    spot_target: int = 0
    ondemand_target: int = 0
    notes: list[str] = field(default_factory=list)
    spare: int = 0  # the policy's own over-provisioning, when above num_overprovision


PlacementPolicy = Callable[[PlacementContext], PlacementResult]

ONDEMAND_COVER = "ondemand_cover"  # attribute of a policy that always covers spot shortfalls


def covers_shortfalls(policy: PlacementPolicy) -> bool:
    """``policy`` launches on-demand for every spot shortfall whatever the spec says
    (as ``dynamic_ondemand_fallback`` does for SpotHedge): plan() may then hold the
    spot search as a whole (:mod:`policies.capacity`) without leaving the service short."""
    return bool(getattr(policy, ONDEMAND_COVER, False))


def covering(policy: PlacementPolicy) -> PlacementPolicy:
    """Mark ``policy`` as one that always covers spot shortfalls with on-demand."""
    setattr(policy, ONDEMAND_COVER, True)
    return policy


def scale_down_order(replicas: Iterable[ReplicaView]) -> list[ReplicaView]:
    """SkyServe's order for scaling down: earliest stage, oldest version, newest id."""
    return sorted(
        replicas,
        key=lambda r: (_SCALE_DOWN_RANK.get(r.status, 0), r.version, -r.replica_id),
    )


def drain(
    replicas: Sequence[ReplicaView], count: int, reason: EndReason, detail: str
) -> list[Terminate]:
    if count <= 0:
        return []
    chosen = scale_down_order(replicas)[:count]
    return [Terminate(r.replica_id, reason, detail) for r in chosen]


def cheapest_spot_offers(offerings: Iterable[Offering]) -> dict[Location, Offering]:
    """The cheapest spot offering per location, in location order."""
    best: dict[Location, Offering] = {}
    for o in offerings:
        if o.spot:
            cur = best.get(o.location)
            if cur is None or o.price < cur.price:
                best[o.location] = o
    return dict(sorted(best.items()))


def _matches(candidate: ResourceCandidate, o: Offering) -> bool:
    if candidate.cloud and candidate.cloud != o.location.cloud:
        return False
    if candidate.region and candidate.region != o.location.region:
        return False
    if candidate.zone and candidate.zone != o.location.zone:
        return False
    if candidate.instance_type and o.instance_type and candidate.instance_type != o.instance_type:
        return False
    if candidate.accelerators and o.accelerators:
        name = o.accelerators.split(":", 1)[0]
        if name not in candidate.accelerators:
            return False
    return True


def ondemand_offer(obs: ServiceObservation) -> Offering | None:
    """The cheapest on-demand offering; with ``resources.ordered``, the first
    candidate (in the user's order) that has any offering wins."""
    od = [o for o in obs.offerings if not o.spot]
    if not od:
        return None
    res = obs.spec.resources
    if res.ordered:
        for candidate in res.candidates:
            matching = [o for o in od if _matches(candidate, o)]
            if matching:
                return min(matching, key=_price_key)
    return min(od, key=_price_key)


def _price_key(o: Offering) -> tuple[float, Location]:
    return (o.price, o.location)


def hedge_states(
    previous: Mapping[Location, LocationState],
    universe: Iterable[Location],
    events: Sequence[LocationEvent],
) -> dict[Location, LocationState]:
    """SpotHedge's location bookkeeping: start from ``previous`` (missing =
    ACTIVE), then per spot event, oldest first: a preemption or capacity error
    marks the location PREEMPTED, a successful launch marks it ACTIVE; when
    fewer than two would stay ACTIVE, all reset to ACTIVE. Notices are ignored."""
    states = {loc: previous.get(loc, LocationState.ACTIVE) for loc in universe}
    for loc, st in previous.items():
        states.setdefault(loc, st)
    for ev in events:
        if not ev.spot:
            continue
        if ev.kind is LocationEventKind.LAUNCHED:
            states[ev.location] = LocationState.ACTIVE
        elif ev.kind in (LocationEventKind.PREEMPTED, LocationEventKind.CAPACITY_ERROR):
            states[ev.location] = LocationState.PREEMPTED
            active = sum(1 for s in states.values() if s is LocationState.ACTIVE)
            if active < 2:
                for loc in states:
                    states[loc] = LocationState.ACTIVE
    return states


def count(replicas: Iterable[ReplicaView], *, spot: bool, ready: bool = False) -> int:
    return sum(1 for r in replicas if r.spot is spot and (not ready or r.status is READY))


def ondemand_launches(ctx: PlacementContext, n: int, why: str) -> list[tuple[Offering, str]]:
    offer = ctx.ondemand_offer
    if offer is None or n <= 0:
        return []
    return [(offer, why)] * min(n, ctx.max_launches)


def settle_ondemand(
    ctx: PlacementContext,
    res: PlacementResult,
    ondemand: list[ReplicaView],
    od_target: int,
    *,
    launch_why: str,
    drain_why: str,
) -> PlacementResult:
    """Bring the on-demand replicas to ``od_target``: launch the missing ones, or
    drain the surplus (SCALED_DOWN, least useful first). Records the target."""
    res.ondemand_target = od_target
    if len(ondemand) < od_target:
        res.ondemand_launches = ondemand_launches(ctx, od_target - len(ondemand), launch_why)
    elif len(ondemand) > od_target:
        res.terminations += drain(
            ondemand, len(ondemand) - od_target, EndReason.SCALED_DOWN, drain_why
        )
    return res
