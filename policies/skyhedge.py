"""SkyHedge: our spot placement and on-demand fallback policy.

What it changes against SpotHedge, each change measured on the real traces
(``benchmarks/policies.py``, ``docs/policies.md``):

- Concentrate, don't half-spread. A preemption that takes more replicas than
  there are spares costs a full cold start, whatever the number lost. Spreading
  N replicas with no spare makes *every* zone loss such an event; stacking two
  or three per zone (what spreading turns into when few zones are ACTIVE)
  makes any loss of a stacked zone one. Zone losses are strongly correlated
  within a region and a zone that has kept capacity for hours tends to keep it
  (on the AWS trace a zone's chance of losing capacity in the next tick falls
  from 7.6% in its first 5 ticks of availability to 0.5% after 50). So with no
  spare, every spot replica goes to one *home* zone: the zone that already
  holds most of ours while it is ACTIVE, else the cheapest ACTIVE zone. Only
  the home zone's losses count, and the home zone is one that has lasted.
- Spread only when the spares can absorb it: with ``num_overprovision`` (or
  ``Params.spare``) >= 1 and at least ``target + spares + spread_margin``
  usable zones, new spot replicas go to the zone with the lowest ``price x (1 +
  stack x our replicas already there)``, so each zone loss costs one replica.
  With fewer usable zones spreading would stack, so it concentrates instead.
- Location bookkeeping is SpotHedge's (ACTIVE/PREEMPTED, all reset when fewer
  than two stay ACTIVE: that reset finds capacity again quickly), plus
  interruption notices, which SpotHedge ignores: a notice marks its location
  PREEMPTED, and a replica with an announced kill no longer counts, so its
  replacement (in another zone) and the on-demand cover launch at once while
  it still serves.
- On-demand only for the target: on-demand fills the gap between the
  autoscaler target and READY healthy spot replicas (SpotHedge also fills the
  spare slots' gap up to the target) and drains as spot becomes READY.
- Optionally one more spare while at least ``volatile_preemptions`` preemptions
  happened in the last ``volatile_window`` seconds (off by default; it only
  applies when spares are in use).

- A zone that just refused a launch is not retried at the same instant (nor
  for ``retry_after`` seconds), so SpotHedge's reset cannot loop between two
  refusing zones while a third has capacity.

State (JSON only) under ``policy_state["skyhedge"]``: ``{"pre": [recent
preemption times], "refused": {"cloud/region/zone": time}}``; the location
states travel in ``Plan.location_states``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from policies.model import LocationEvent, LocationEventKind, LocationState, ReplicaView
from policies.placement import (
    READY,
    PlacementContext,
    PlacementPolicy,
    PlacementResult,
    drain,
    hedge_states,
    ondemand_launches,
)
from skyctl.lifecycle import EndReason
from skyctl.types import Location, Offering

_KEEP_PREEMPTIONS = 50
_BAD = (LocationEventKind.PREEMPTED, LocationEventKind.CAPACITY_ERROR, LocationEventKind.NOTICE)
ACTIVE = LocationState.ACTIVE


@dataclass(frozen=True)
class Params:
    spare: int = 0  # spare spot replicas when the spec does not set num_overprovision
    stack: float = 2.0  # spread mode: price multiplier per replica of ours already in a zone
    spread_margin: int = 0  # spread when usable zones >= target + spares + this
    volatile_preemptions: int = 0  # >0: one more spare while this many recent preemptions
    volatile_window: float = 3600.0  # seconds that count as recent
    retry_after: float = 0.0  # a zone that refused us is avoided for this long (0: this instant)


def location_key(loc: Location) -> str:
    return f"{loc.cloud}/{loc.region}/{loc.zone}"


def location_states(
    previous: Mapping[Location, LocationState],
    universe: Sequence[Location],
    events: Sequence[LocationEvent],
) -> dict[Location, LocationState]:
    """SpotHedge's bookkeeping (:func:`policies.placement.hedge_states`) with an
    interruption notice counted as a preemption of its location."""
    as_preemptions = [
        LocationEvent(LocationEventKind.PREEMPTED, ev.location, ev.at, ev.spot)
        if ev.kind is LocationEventKind.NOTICE
        else ev
        for ev in events
    ]
    return hedge_states(previous, universe, as_preemptions)


def choose_location(
    offers: Mapping[Location, Offering],
    states: Mapping[Location, LocationState],
    per_zone: Mapping[Location, int],
    *,
    spread: bool,
    stack: float = 2.0,
    avoid: Collection[Location] = (),
) -> Location | None:
    """Where the next spot replica goes; None without offers.

    Concentrating: the ACTIVE zone holding most of ours (the cheaper on a tie),
    else the cheapest ACTIVE zone. Spreading: the ACTIVE zone with the lowest
    ``price x (1 + stack x ours there)``. Zones in ``avoid`` (one just refused
    a launch, or holds a replica with an announced kill) come last; without an
    ACTIVE zone, the same rule over all zones."""
    if not offers:
        return None
    allowed = [loc for loc in offers if loc not in avoid] or list(offers)
    pool = [loc for loc in allowed if states.get(loc, ACTIVE) is ACTIVE] or allowed
    if spread:
        return min(
            pool, key=lambda loc: (offers[loc].price * (1 + stack * per_zone.get(loc, 0)), loc)
        )
    return min(pool, key=lambda loc: (-per_zone.get(loc, 0), offers[loc].price, loc))


def _healthy(r: ReplicaView) -> bool:
    return r.interruption_at is None


def make_skyhedge(p: Params | None = None) -> PlacementPolicy:
    """A SkyHedge policy with parameters ``p`` (the registry uses the defaults)."""
    params = p or Params()

    def skyhedge(ctx: PlacementContext) -> PlacementResult:
        now = ctx.now
        events = ctx.obs.events
        offers = ctx.spot_offers
        states = location_states(ctx.obs.location_states, list(offers), events)
        recent = [float(t) for t in ctx.state.get("pre", []) if now - t < params.volatile_window]
        recent += [ev.at for ev in events if ev.spot and ev.kind is LocationEventKind.PREEMPTED]
        refused = {
            k: float(t)
            for k, t in ctx.state.get("refused", {}).items()
            if now - t <= params.retry_after
        }
        for ev in events:
            if ev.spot and ev.kind in _BAD and now - ev.at <= params.retry_after:
                refused[location_key(ev.location)] = ev.at
        res = PlacementResult(
            location_states=states,
            state={"pre": recent[-_KEEP_PREEMPTIONS:], "refused": refused},
        )
        avoid = {loc for loc in offers if location_key(loc) in refused}
        avoid |= {r.location for r in ctx.replicas if r.spot and not _healthy(r)}

        rp = ctx.obs.spec.service.replica_policy
        spare = ctx.overprovision if rp.num_overprovision is not None else params.spare
        volatile = spare > 0 and 0 < params.volatile_preemptions <= len(recent)
        if volatile:
            spare += 1
        need = max(0, ctx.target - ctx.base_ondemand)
        spot_target = need + spare if offers and ctx.target > 0 else 0
        res.spot_target = spot_target
        res.spare = spare

        spot = [r for r in ctx.replicas if r.spot and _healthy(r)]
        ondemand = [r for r in ctx.replicas if not r.spot]
        per_zone: dict[Location, int] = {}
        for r in spot:
            per_zone[r.location] = per_zone.get(r.location, 0) + 1
        usable = sum(1 for loc in offers if per_zone.get(loc) or states[loc] is ACTIVE)
        spread = spare > 0 and usable >= spot_target + params.spread_margin
        mode = "spread" if spread else "home zone"
        if len(spot) < spot_target:
            cap = ctx.max_launches - ctx.overprovision + spare
            for _ in range(min(spot_target - len(spot), cap)):
                loc = choose_location(
                    offers, states, per_zone, spread=spread, stack=params.stack, avoid=avoid
                )
                if loc is None:
                    break
                per_zone[loc] = per_zone.get(loc, 0) + 1
                why = f"skyhedge: spot in {loc} ({mode})" + (" +volatile spare" if volatile else "")
                res.spot_launches.append((offers[loc], why))
        elif len(spot) > spot_target:
            res.terminations += drain(
                spot, len(spot) - spot_target, EndReason.SCALED_DOWN, "skyhedge: spot surplus"
            )

        ready = sum(1 for r in spot if r.status is READY)
        od_target = min(ctx.target, ctx.base_ondemand + max(0, need - ready))
        res.ondemand_target = od_target
        if len(ondemand) < od_target:
            res.ondemand_launches = ondemand_launches(
                ctx, od_target - len(ondemand), "skyhedge: on-demand covers missing spot"
            )
        elif len(ondemand) > od_target:
            res.terminations += drain(
                ondemand,
                len(ondemand) - od_target,
                EndReason.SCALED_DOWN,
                "skyhedge: spot covers the target again, on-demand drained",
            )
        return res

    return skyhedge


skyhedge = make_skyhedge()
