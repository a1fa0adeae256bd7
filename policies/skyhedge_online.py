"""SkyHedge-online: SpotHedge's placements, exactly, plus spares sized by online risk estimates.

The decision rule, in one paragraph: place every replica as SpotHedge does
(:func:`policies.spothedge.spothedge`: the same ACTIVE/PREEMPTED bookkeeping,
the same zone choice, the same on-demand fallback), then ADD ``k`` spot spares,
where the ``k``-th spare is kept when it pays for itself: its price is below
the unavailability it saves. One unavailable replica-hour is priced at
``risk_price`` on-demand replica-hours (the one knob), so a spare saves
``risk_price x on-demand price x D x`` the rate of loss events that take ``k``
or more of our replicas at once (events in one zone holding ``k`` or more, and
joint events in a region holding ``k`` or more), ``D`` being the expected cold
start less the expected notice lead. Spares go after SpotHedge's own launches,
to the zone SpotHedge would pick next, and only while no spot launch has been
refused for capacity in the last ``quiet_s`` seconds: a refusal means a cap
binds, a spare would take a slot (and launch budget) SpotHedge's placements
need, so the spares are drained first, before any replica SpotHedge would keep.
On-demand covers the gap between SpotHedge's spot target and the READY spot
replicas, spares included. One addition to SpotHedge, which ignores
interruption notices: a replica whose kill is announced no longer counts, so
its replacement and the on-demand cover launch at the notice while it still
serves (capacity is only added, earlier; ``on_notice=False`` ignores notices,
as SpotHedge does); the noticed zone is PREEMPTED from the notice on, as
SpotHedge marks it at the preemption itself. An optional floor (``floor_p``,
off by default: it keeps an on-demand replica beside almost every
single-replica service), for SpotHedge's "at least one ready": while no
on-demand replica is wanted, one is kept when the estimated probability
that every spot replica we hold is lost within one cold start (less the
notice lead) exceeds ``floor_p``
(:func:`policies.estimators.p_all_lost`: per region, its joint loss or else
each held zone's own; regions independent): the spares guard N ready
against losing some replicas, the floor guards against losing all of them.
Without notices, with zero spares and no floor (``risk_price = 0``) every
decision is SpotHedge's.

Every rate comes from :mod:`policies.estimators` (per zone, shrunk towards
its region and the global rate), kept in ``policy_state["skyhedge_online"]["est"]``
(JSON). Nothing is tuned per trace: ``risk_price`` is chosen once on the
tuning set of ``benchmarks/policy_suite.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from policies import estimators
from policies.model import LocationEventKind, LocationState
from policies.placement import (
    PlacementContext,
    PlacementPolicy,
    PlacementResult,
    count,
    covering,
    drain,
    hedge_states,
    settle_ondemand,
)
from policies.spothedge import select_location
from skyctl.lifecycle import EndReason
from skyctl.types import Location

ACTIVE = LocationState.ACTIVE


@dataclass(frozen=True)
class Params:
    #: price of one unavailable replica-hour, in on-demand replica-hours (the knob;
    #: 1: chosen on the tuning set of benchmarks/policy_suite.py; 0: SpotHedge exactly)
    risk_price: float = 1.0
    #: own spares at most this share of the target (rounded up)
    max_spare_share: float = 0.5
    #: no spares until this long after the last spot capacity refusal (a cap binds)
    quiet_s: float = 3600.0
    #: keep one on-demand replica while P(every spot replica lost within one cold start)
    #: exceeds this (None, the default: never; 1e-3: the setting measured, see docs/policies.md)
    floor_p: float | None = None
    #: a replica with an announced kill stops counting, so its replacement and the on-demand
    #: cover launch at the notice (False: notices ignored, as SpotHedge does; see docs/policies.md)
    on_notice: bool = True


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
        obs, now, offers = ctx.obs, ctx.now, ctx.spot_offers
        est = estimators.update(ctx.state.get("est"), obs, now)
        refused = [
            ev.at for ev in obs.events if ev.spot and ev.kind is LocationEventKind.CAPACITY_ERROR
        ]
        last_refusal = max([float(ctx.state.get("refused_at", -1e18)), *refused])
        # with notices acted on, a noticed replica's zone is PREEMPTED from the notice on,
        # as SpotHedge marks it at the preemption: the replacement launched now never
        # goes where the kill is announced, and with fewer than two zones left ACTIVE all
        # reset, as they would a notice-lead later (else it stacks onto a zone in use)
        events = [
            replace(ev, kind=LocationEventKind.PREEMPTED)
            if p.on_notice and ev.kind is LocationEventKind.NOTICE
            else ev
            for ev in obs.events
        ]
        states = hedge_states(obs.location_states, offers, events)
        res = PlacementResult(
            location_states=states, state={"est": est, "refused_at": last_refusal}
        )
        # a replica with an announced kill no longer counts: its replacement and the
        # on-demand cover launch at once while it still serves (it is never drained)
        spot = [
            r for r in ctx.replicas if r.spot and (r.interruption_at is None or not p.on_notice)
        ]
        ondemand = [r for r in ctx.replicas if not r.spot]
        need = max(0, ctx.final_target - ctx.base_ondemand)  # SpotHedge's spot target

        spare = 0
        active = [loc for loc in offers if states.get(loc, ACTIVE) is ACTIVE]
        if need and active and p.risk_price > 0 and now - last_refusal >= p.quiet_s:
            risks = estimators.risks(est, list(offers), now)
            od_price = ctx.ondemand_offer.price if ctx.ondemand_offer else 0.0
            lead = estimators.notice_lead_s(est)
            downtime_h = max(0.0, estimators.cold_start_s(est) - lead) / 3600.0
            unit = p.risk_price * od_price * downtime_h  # $ per replica lost for a cold start
            cheapest = min(offers[loc].price for loc in active)
            cap = int(-(-ctx.target * p.max_spare_share // 1))
            spare = spares_for([r.location for r in spot], risks, unit, cheapest, cap)
        spot_target = need + spare
        res.spare = spare + ctx.overprovision
        res.spot_target = spot_target

        if len(spot) < spot_target:
            in_use = list(ctx.spot_in_use)
            ours = max(0, min(need - len(spot), ctx.max_launches))  # SpotHedge's launches
            for i in range(ours + min(spot_target - len(spot) - ours, spare)):
                loc = select_location(states, in_use, offers)
                if loc is None:
                    res.notes.append("skyhedge_online: no spot location to launch in")
                    break
                in_use.append(loc)
                what = "spot" if i < ours else "spare"
                res.spot_launches.append((offers[loc], f"skyhedge_online: {what} in {loc}"))
        elif len(spot) > spot_target:
            res.terminations += drain(
                spot,
                len(spot) - spot_target,
                EndReason.SCALED_DOWN,
                "skyhedge_online: spot surplus",
            )
        if spare:
            res.notes.append(f"skyhedge_online: {spare} spare(s) for the estimated risk")

        # SpotHedge's dynamic on-demand fallback (always on here), against its own spot target
        od_target = ctx.base_ondemand + max(0, need - count(spot, spot=True, ready=True))
        if p.floor_p is not None and p.risk_price > 0 and spot and od_target < 1:
            lead = estimators.notice_lead_s(est)
            window_h = max(0.0, estimators.cold_start_s(est) - lead) / 3600.0
            p_all = estimators.p_all_lost(est, [r.location for r in spot], window_h, now)
            if p_all > p.floor_p:
                od_target = 1
                res.notes.append(f"skyhedge_online: on-demand floor (P(all spot lost) {p_all:.2g})")
        od_target = min(od_target, ctx.target)
        return settle_ondemand(
            ctx,
            res,
            ondemand,
            od_target,
            launch_why="skyhedge_online: on-demand fallback",
            drain_why="skyhedge_online: spot ready again, on-demand drained",
        )

    # its fallback is always on: plan() holds its spot search as SpotHedge's with
    # dynamic_ondemand_fallback (policies.capacity)
    return covering(skyhedge_online)


skyhedge_online = make()
