"""SkyHedge-online: SpotHedge's bookkeeping, with risk estimated online instead of thresholds.

The decision rule, in one paragraph: every unavailable replica-hour is priced
at ``risk_price`` on-demand replica-hours (the one knob). A spot replica in
zone *z* then costs, per hour, its price plus that price on unavailability
times the replica-hours it is expected to lose: ``D x (loss rate of z + joint
loss rate of its region)`` plus ``D x P(refused now)``, where ``D`` is the
expected cold start less the expected notice lead. New spot replicas go, as
in SpotHedge, first to ACTIVE zones not holding one of ours, else to any
ACTIVE zone, but the cheapest by that expected cost, not by price. The
``k``-th spare is kept when it pays for itself: its price is below the
unavailability it saves, ``risk_price x on-demand price x D x`` the rate of
loss events that take ``k`` or more of our replicas at once (events in one
zone holding ``k`` or more, and joint events in a region holding ``k`` or
more). On-demand covers the gap between the target (without spares) and the
READY spot replicas not under an interruption notice, as SpotHedge's dynamic
fallback does; a notice marks its zone PREEMPTED and its replica stops
counting, so its replacement and the cover launch at once.

Every rate comes from :mod:`policies.estimators` (per zone, shrunk towards
its region and the global rate), kept in ``policy_state["skyhedge_online"]["est"]``
(JSON). Nothing is tuned per trace: ``risk_price`` is chosen once on the
tuning set of ``benchmarks/policy_suite.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from policies import estimators
from policies.model import LocationEventKind, LocationState
from policies.placement import (
    PlacementContext,
    PlacementPolicy,
    PlacementResult,
    drain,
    hedge_states,
    settle_ondemand,
)
from skyctl.lifecycle import EndReason, ReplicaStatus
from skyctl.types import Location

ACTIVE, PREEMPTED = LocationState.ACTIVE, LocationState.PREEMPTED


@dataclass(frozen=True)
class Params:
    #: price of one unavailable replica-hour, in on-demand replica-hours (the knob;
    #: 16: chosen on the tuning set of benchmarks/policy_suite.py)
    risk_price: float = 16.0
    #: own spares at most this share of the target (rounded up)
    max_spare_share: float = 0.5
    #: place by expected cost (True) or by price alone, as SpotHedge (False)
    risk_placement: bool = True


def _notices(states: dict[Location, LocationState], ctx: PlacementContext) -> None:
    for ev in ctx.obs.events:
        if ev.spot and ev.kind is LocationEventKind.NOTICE and ev.location in states:
            states[ev.location] = PREEMPTED
            if sum(1 for s in states.values() if s is ACTIVE) < 2:
                for loc in states:
                    states[loc] = ACTIVE


def spares_for(
    held: Iterable[Location],
    risks: dict[Location, estimators.Risk],
    unit_cost: float,
    spare_price: float,
    cap: int,
) -> int:
    """The number of spares that pay for themselves (see the module docstring):
    ``unit_cost`` is the price on one replica lost for one cold start."""
    per_zone: dict[Location, int] = {}
    per_region: dict[tuple[str, str], int] = {}
    for loc in held:
        per_zone[loc] = per_zone.get(loc, 0) + 1
        rk = (loc.cloud, loc.region)
        per_region[rk] = per_region.get(rk, 0) + 1
    joint = {(loc.cloud, loc.region): r.joint_rate for loc, r in risks.items()}
    k = 0
    while k < cap:
        rate = sum(risks[z].loss_rate for z, n in per_zone.items() if n > k and z in risks)
        rate += sum(joint.get(rk, 0.0) for rk, n in per_region.items() if n > k)
        if unit_cost * rate <= spare_price:
            break
        k += 1
    return k


def make(params: Params | None = None) -> PlacementPolicy:
    p = params or Params()

    def skyhedge_online(ctx: PlacementContext) -> PlacementResult:
        obs, now = ctx.obs, ctx.now
        est = estimators.update(ctx.state.get("est"), obs, now)
        states = hedge_states(obs.location_states, ctx.spot_offers, obs.events)
        _notices(states, ctx)
        res = PlacementResult(location_states=states, state={"est": est})
        offers = ctx.spot_offers
        spot = [r for r in ctx.replicas if r.spot]
        healthy = [r for r in spot if r.interruption_at is None]
        ondemand = [r for r in ctx.replicas if not r.spot]

        risks = estimators.risks(est, list(offers), now)
        od_price = ctx.ondemand_offer.price if ctx.ondemand_offer else 0.0
        lead = estimators.notice_lead_s(est)
        downtime_h = max(0.0, estimators.cold_start_s(est) - lead) / 3600.0
        unit = p.risk_price * od_price * downtime_h  # $ per replica lost for a cold start
        cold_h = estimators.cold_start_s(est) / 3600.0

        def expected_cost(loc: Location) -> float:
            if not p.risk_placement:
                return offers[loc].price
            r = risks[loc]
            return (
                offers[loc].price
                + unit * (r.loss_rate + r.joint_rate)
                + (p.risk_price * od_price * cold_h * r.refusal)
            )

        need = max(0, ctx.final_target - ctx.base_ondemand)
        active = [loc for loc in offers if states.get(loc, ACTIVE) is ACTIVE]
        cheapest = min((offers[loc].price for loc in active), default=0.0)
        cap = -(-ctx.target * p.max_spare_share // 1) if need else 0
        held = [r.location for r in healthy]
        spare = spares_for(held, risks, unit, cheapest, int(cap)) if need and active else 0
        spot_target = need + spare if need else 0
        res.spare = spare + ctx.overprovision
        res.spot_target = spot_target

        refused_now = {
            ev.location
            for ev in obs.events
            if ev.kind is LocationEventKind.CAPACITY_ERROR and ev.at == now
        }
        if len(healthy) < spot_target:
            in_use = [loc for loc in ctx.spot_in_use]
            budget = ctx.max_launches + spare
            for _ in range(min(spot_target - len(healthy), budget)):
                pool = [loc for loc in active if loc not in refused_now] or active
                fresh = [loc for loc in pool if loc not in in_use] or pool
                if not fresh:
                    res.notes.append("skyhedge_online: no spot location to launch in")
                    break
                loc = min(fresh, key=lambda x: (expected_cost(x), x))
                in_use.append(loc)
                res.spot_launches.append((offers[loc], f"skyhedge_online: spot in {loc}"))
        elif len(healthy) > spot_target:
            res.terminations += drain(
                healthy,
                len(healthy) - spot_target,
                EndReason.SCALED_DOWN,
                "skyhedge_online: spot surplus",
            )
        if spare:
            res.notes.append(f"skyhedge_online: {spare} spare(s) for the estimated risk")

        ready = sum(1 for r in healthy if r.status is ReplicaStatus.READY)
        od_target = ctx.base_ondemand + max(0, spot_target - ready)
        od_target = min(od_target, ctx.target)
        return settle_ondemand(
            ctx,
            res,
            ondemand,
            od_target,
            launch_why="skyhedge_online: on-demand cover",
            drain_why="skyhedge_online: spot ready, on-demand drained",
        )

    return skyhedge_online


skyhedge_online = make()
