"""SpotHedge, as SkyServe implements it (``spot_placer: dynamic_fallback`` with
``FallbackRequestRateAutoscaler``): the peer we measure ourselves against.

- Locations are ACTIVE or PREEMPTED (:func:`policies.placement.hedge_states`).
- Next spot replica: among ACTIVE locations not already hosting one of this
  service's spot replicas (else all ACTIVE ones), the cheapest.
- Target = autoscaler target + ``num_overprovision``; spot target = target -
  ``base_ondemand_fallback_replicas``; on-demand target = base + (if
  ``dynamic_ondemand_fallback``) max(0, spot target - READY spot), capped at
  the autoscaler target so over-provisioned slots never get on-demand.
  Ours: the dynamic part covers the autoscaler target only (max(0, target -
  base - READY spot)): while the READY spot replicas with the spare still
  cover the target, a preemption gets its spot replacement and no on-demand
  fallback besides (the spare is there for exactly that; the fallback would
  be launched and drained for nothing: two launches a preemption instead of one).
  Surplus replicas of either kind are drained in SkyServe's scale-down order.
- Interruption notices are ignored, as SkyServe does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from policies.model import LocationState
from policies.placement import (
    PlacementContext,
    PlacementResult,
    count,
    drain,
    hedge_states,
    settle_ondemand,
)
from skyctl.lifecycle import EndReason
from skyctl.types import Location, Offering


def select_location(
    states: Mapping[Location, LocationState],
    in_use: Sequence[Location],
    offers: Mapping[Location, Offering],
) -> Location | None:
    """The cheapest ACTIVE location not in ``in_use``; else the cheapest ACTIVE one."""
    active = [
        loc for loc in offers if states.get(loc, LocationState.ACTIVE) is LocationState.ACTIVE
    ]
    if not active:
        return None
    used = set(in_use)
    candidates = [loc for loc in active if loc not in used] or active
    return min(candidates, key=lambda loc: (offers[loc].price, loc))


def spothedge(ctx: PlacementContext) -> PlacementResult:
    obs = ctx.obs
    states = hedge_states(obs.location_states, ctx.spot_offers, obs.events)
    res = PlacementResult(location_states=states)
    spot = [r for r in ctx.replicas if r.spot]
    ondemand = [r for r in ctx.replicas if not r.spot]

    spot_target = max(0, ctx.final_target - ctx.base_ondemand)
    res.spot_target = spot_target
    if len(spot) < spot_target:
        in_use = list(ctx.spot_in_use)
        for _ in range(min(spot_target - len(spot), ctx.max_launches)):
            loc = select_location(states, in_use, ctx.spot_offers)
            if loc is None:
                res.notes.append("spothedge: no spot location to launch in")
                break
            in_use.append(loc)
            res.spot_launches.append((ctx.spot_offers[loc], f"spothedge: spot in {loc}"))
    elif len(spot) > spot_target:
        res.terminations += drain(
            spot, len(spot) - spot_target, EndReason.SCALED_DOWN, "spothedge: spot surplus"
        )

    od_target = ctx.base_ondemand
    if ctx.dynamic_ondemand:
        slots = max(0, ctx.target - ctx.base_ondemand)  # the spare covers its own slot
        od_target += max(0, slots - count(spot, spot=True, ready=True))
    od_target = min(od_target, ctx.target)
    return settle_ondemand(
        ctx,
        res,
        ondemand,
        od_target,
        launch_why="spothedge: on-demand fallback",
        drain_why="spothedge: spot ready again, on-demand drained",
    )
