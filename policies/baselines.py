"""Baseline placement policies, the reference points of the benchmark.

- ``ondemand_only``: every replica on demand (target + over-provisioning), at
  the on-demand offering of :func:`policies.placement.ondemand_offer`.
- ``cheapest_spot``: every replica spot, all in the location that is cheapest
  now; no on-demand fallback, no memory of preemptions.
- ``round_robin_spot``: every replica spot, new ones spread over the locations
  in turn (a cursor kept in policy state); no on-demand fallback.

Replicas of the wrong kind (after a policy change) are drained.
"""

from __future__ import annotations

from policies.placement import PlacementContext, PlacementResult, drain, ondemand_launches
from skyctl.lifecycle import EndReason


def _keep_kind(ctx: PlacementContext, res: PlacementResult, *, spot: bool, name: str) -> None:
    """Fill or drain the kind ``spot`` to the final target; drain the other kind."""
    wrong = [r for r in ctx.replicas if r.spot is not spot]
    res.terminations += drain(wrong, len(wrong), EndReason.SCALED_DOWN, f"{name}: wrong kind")
    mine = [r for r in ctx.replicas if r.spot is spot]
    surplus = len(mine) - ctx.final_target
    if surplus > 0:
        res.terminations += drain(mine, surplus, EndReason.SCALED_DOWN, f"{name}: surplus")


def ondemand_only(ctx: PlacementContext) -> PlacementResult:
    res = PlacementResult(location_states=dict(ctx.obs.location_states))
    res.ondemand_target = ctx.final_target
    _keep_kind(ctx, res, spot=False, name="ondemand_only")
    have = sum(1 for r in ctx.replicas if not r.spot)
    res.ondemand_launches = ondemand_launches(
        ctx, ctx.final_target - have, "ondemand_only: on-demand replica"
    )
    if ctx.final_target > have and ctx.ondemand_offer is None:
        res.notes.append("ondemand_only: no on-demand offering")
    return res


def cheapest_spot(ctx: PlacementContext) -> PlacementResult:
    res = PlacementResult(location_states=dict(ctx.obs.location_states))
    res.spot_target = ctx.final_target
    _keep_kind(ctx, res, spot=True, name="cheapest_spot")
    missing = ctx.final_target - sum(1 for r in ctx.replicas if r.spot)
    if missing > 0 and ctx.spot_offers:
        best = min(ctx.spot_offers.values(), key=lambda o: (o.price, o.location))
        why = f"cheapest_spot: spot in {best.location}"
        res.spot_launches = [(best, why)] * min(missing, ctx.max_launches)
    return res


def round_robin_spot(ctx: PlacementContext) -> PlacementResult:
    res = PlacementResult(location_states=dict(ctx.obs.location_states))
    res.spot_target = ctx.final_target
    _keep_kind(ctx, res, spot=True, name="round_robin_spot")
    missing = ctx.final_target - sum(1 for r in ctx.replicas if r.spot)
    cursor = int(ctx.state.get("next", 0))
    locations = list(ctx.spot_offers)
    if missing > 0 and locations:
        for _ in range(min(missing, ctx.max_launches)):
            loc = locations[cursor % len(locations)]
            cursor += 1
            res.spot_launches.append((ctx.spot_offers[loc], f"round_robin_spot: spot in {loc}"))
    res.state = {"next": cursor % len(locations) if locations else 0}
    return res
