"""SkyHedge: our spot placement and on-demand fallback policy.

What it changes against SpotHedge, each change measured on the real traces
(``benchmarks/policies.py``, ``docs/policies.md``):

- A home zone plus anchors, not a half-spread. A preemption that takes more
  replicas than there are spares costs a full cold start, whatever the number
  lost, so most spot replicas share one *home* zone: the ACTIVE zone holding
  most of ours, else the cheapest ACTIVE zone (a zone that has kept capacity
  for hours tends to keep it). But one zone must never hold them all: a home
  zone loss would be a total outage. So ``ceil(spot target / anchor_every)``
  replicas (at least one, whenever there are two or more) are *anchors*, each
  in a failure domain (cloud, region) of its own, away from the home zone's.
  When the home zone is lost, the anchor keeps serving and its zone, which has
  just proven it lasts, becomes the home (it now holds most of ours); a new
  anchor goes to another region.
- Spread only when the spares can absorb it: with ``num_overprovision`` (or
  ``Params.spare``) >= 1, ``spread_spares`` and at least ``target + spares +
  spread_margin`` usable zones, new spot replicas go to the zone with the
  lowest ``price x (1 + stack x our replicas already there)``, so each zone
  loss costs one replica. With fewer usable zones it goes back to home and
  anchors.
- Location bookkeeping is SpotHedge's (ACTIVE/PREEMPTED, all reset when fewer
  than two stay ACTIVE), plus interruption notices, which SpotHedge ignores: a
  notice marks its location PREEMPTED, and a replica with an announced kill no
  longer counts, so its replacement (elsewhere) and the on-demand cover launch
  at once while it still serves.
- On-demand only for the target: on-demand fills the gap between the
  autoscaler target and READY healthy spot replicas and drains as spot becomes
  READY.
- A zone that just refused a launch is not retried at the same instant (nor
  for ``retry_after`` seconds), so SpotHedge's reset cannot loop between two
  refusing zones while a third has capacity.
- Optionally one more spare while at least ``volatile_preemptions``
  preemptions happened in the last ``volatile_window`` seconds (off by
  default; only when spares are in use).

State (JSON only) under ``policy_state["skyhedge"]``: ``{"pre": [recent
preemption times], "refused": {"cloud/region/zone": time}}``; the location
states travel in ``Plan.location_states``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from policies.model import LocationEventKind, LocationState, ReplicaView
from policies.placement import (
    READY,
    PlacementContext,
    PlacementPolicy,
    PlacementResult,
    drain,
    ondemand_launches,
)
from policies.skyhedge_place import (
    Domain,
    choose_anchor,
    choose_location,
    domain,
    location_key,
    location_states,
)
from skyctl.lifecycle import EndReason
from skyctl.types import Location, Offering

__all__ = [
    "Params",
    "choose_anchor",
    "choose_location",
    "location_key",
    "location_states",
    "make_skyhedge",
    "skyhedge",
]

_KEEP_PREEMPTIONS = 50
_BAD = (LocationEventKind.PREEMPTED, LocationEventKind.CAPACITY_ERROR, LocationEventKind.NOTICE)
ACTIVE = LocationState.ACTIVE


@dataclass(frozen=True)
class Params:
    spare: int = 0  # spare spot replicas when the spec does not set num_overprovision
    anchor_every: int = 4  # one anchor per this many spot replicas (at least one of 2+); 0: none
    premium: float = 1.5  # home/anchor zones cost at most this x the cheapest ACTIVE zone
    anchor_retry: float = 1800.0  # an anchor avoids zones lost or refused this recently
    rebalance: bool = False
    od_floor: int = 0  # 1: one on-demand replica while spot spans one failure domain; 2: READY spot
    floor_zones: int = 99  # od_floor only while at most this many zones are eligible  # launch a missing anchor even at full count, then drain a home one
    spread_spares: bool = True  # with spares and enough zones, spread instead of home + anchors
    stack: float = 2.0  # spread mode: price multiplier per replica of ours already in a zone
    spread_margin: int = 0  # spread when usable zones >= target + spares + this
    volatile_preemptions: int = 0  # >0: one more spare while this many recent preemptions
    volatile_window: float = 3600.0  # seconds that count as recent
    retry_after: float = 0.0  # a zone that refused us is avoided for this long (0: this instant)


def anchors_for(spot_target: int, every: int) -> int:
    """Anchor replicas among ``spot_target``: ``ceil(target / every)``, at least
    one whenever there are two or more replicas, never all of them."""
    if every <= 0 or spot_target < 2:
        return 0
    return min(spot_target - 1, max(1, math.ceil(spot_target / every)))


def home_and_anchors(
    offers: dict[Location, Offering],
    states: dict[Location, LocationState],
    per_zone: dict[Location, int],
    count: int,
    anchors: int,
    avoid: set[Location],
    eligible: set[Location],
    premium: float | None = None,
) -> list[tuple[Location, str]]:
    """Zones for ``count`` new spot replicas: anchors first until ``anchors``
    failure domains other than the home zone's hold ours, then the home zone.
    Updates ``per_zone``."""
    home = choose_location(offers, states, per_zone, spread=False, avoid=avoid, premium=premium)
    if home is None:
        return []
    taken: set[Domain] = {domain(loc) for loc, n in per_zone.items() if n}
    out: list[tuple[Location, str]] = []
    for _ in range(count):
        loc: Location | None = None
        role = "home zone"
        if len(taken - {domain(home)}) < anchors:
            loc = choose_anchor(
                offers, eligible, per_zone, taken=taken | {domain(home)}, premium=premium
            )
            role = "anchor"
        if loc is None or loc == home:
            loc, role = home, "home zone"
        per_zone[loc] = per_zone.get(loc, 0) + 1
        taken.add(domain(loc))
        out.append((loc, role))
    return out


def _healthy(r: ReplicaView) -> bool:
    return r.interruption_at is None


def make_skyhedge(p: Params | None = None) -> PlacementPolicy:
    """A SkyHedge policy with parameters ``p`` (the registry uses the defaults)."""
    params = p or Params()

    def skyhedge(ctx: PlacementContext) -> PlacementResult:
        now = ctx.now
        events = ctx.obs.events
        offers = dict(ctx.spot_offers)
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
        bad = {
            k: float(t)
            for k, t in ctx.state.get("bad", {}).items()
            if now - t < params.anchor_retry
        }
        for ev in events:
            if ev.spot and ev.kind in _BAD and now - ev.at < params.anchor_retry:
                bad[location_key(ev.location)] = ev.at
        res = PlacementResult(
            location_states=states,
            state={"pre": recent[-_KEEP_PREEMPTIONS:], "refused": refused, "bad": bad},
        )
        avoid = {loc for loc in offers if location_key(loc) in refused}
        avoid |= {r.location for r in ctx.replicas if r.spot and not _healthy(r)}
        eligible = {loc for loc in offers if loc not in avoid and location_key(loc) not in bad}

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
        spread = (
            params.spread_spares
            and spare > 0
            and usable >= spot_target + params.spread_margin
        )
        anchors = 0 if spread else anchors_for(spot_target, params.anchor_every)
        home = choose_location(
            offers, states, per_zone, spread=False, avoid=avoid, premium=params.premium
        )
        home_domain = domain(home) if home else None
        anchor_reps = [r for r in spot if domain(r.location) != home_domain]
        short = anchors > len({domain(r.location) for r in anchor_reps})
        if params.rebalance and short and spot and len(spot) == spot_target:
            extra = home_and_anchors(
                offers, states, dict(per_zone), 1, anchors, avoid, eligible, params.premium
            )
            if extra and extra[0][1] == "anchor":
                loc = extra[0][0]
                res.spot_launches.append((offers[loc], f"skyhedge: spot in {loc} (new anchor)"))
        elif len(spot) > spot_target and params.rebalance and any(r.status is not READY for r in anchor_reps):
            pass  # a new anchor is warming up: drain a home replica once it serves
        elif len(spot) > spot_target and params.rebalance and anchor_reps:
            keep = {id(r) for r in anchor_reps}
            movable = [r for r in spot if id(r) not in keep] or spot
            res.terminations += drain(
                movable, len(spot) - spot_target, EndReason.SCALED_DOWN, "skyhedge: spot surplus"
            )
        elif len(spot) < spot_target:
            cap = ctx.max_launches - ctx.overprovision + spare
            count = min(spot_target - len(spot), cap)
            if spread:
                chosen: list[tuple[Location, str]] = []
                for _ in range(count):
                    loc = choose_location(
                        offers, states, per_zone, spread=True, stack=params.stack, avoid=avoid
                    )
                    if loc is None:
                        break
                    per_zone[loc] = per_zone.get(loc, 0) + 1
                    chosen.append((loc, "spread"))
            else:
                chosen = home_and_anchors(
                    offers, states, per_zone, count, anchors, avoid, eligible, params.premium
                )
            extra = " +volatile spare" if volatile else ""
            for loc, role in chosen:
                res.spot_launches.append((offers[loc], f"skyhedge: spot in {loc} ({role}){extra}"))
        elif len(spot) > spot_target:
            res.terminations += drain(
                spot, len(spot) - spot_target, EndReason.SCALED_DOWN, "skyhedge: spot surplus"
            )

        ready = sum(1 for r in spot if r.status is READY)
        od_target = ctx.base_ondemand + max(0, need - ready)
        if params.od_floor and anchors:
            doms = {domain(loc) for loc, n in per_zone.items() if n}
            if params.od_floor == 2:
                doms = {domain(r.location) for r in spot if r.status is READY}
            if len(doms) < 2 and len(eligible) <= params.floor_zones:
                od_target = max(od_target, ctx.base_ondemand + 1)
        od_target = min(ctx.target, od_target)
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
