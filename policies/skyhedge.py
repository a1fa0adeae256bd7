"""SkyHedge: our spot placement and on-demand fallback policy.

What it changes against SpotHedge, each change measured on the real traces
(``benchmarks/policies.py``, ``docs/policies.md``):

- A home zone plus an anchor, not a half-spread. A preemption that takes more
  replicas than there are spares costs a full cold start, whatever the number
  lost, so most spot replicas share one *home* zone: the ACTIVE zone holding
  most of ours, else the cheapest ACTIVE zone (a zone that has kept capacity
  for hours tends to keep it), among zones priced within ``premium`` of the
  cheapest. But one zone must never hold them all, or its loss is a total
  outage: ``ceil(target / anchor_every)`` replicas (at least one whenever the
  target is two or more; spares go home, below ``tolerant_spares``) are
  *anchors*, each in a zone of a failure domain (cloud, region) holding none
  of ours, chosen among zones with no loss or refusal in the last
  ``anchor_retry`` seconds; with no such zone, another zone of the home
  region. When the home zone is lost, the
  anchor serves on, its zone (which just proved it lasts) becomes the home,
  since it now holds most of ours, and a new anchor goes elsewhere.
- Rebalance: when no anchor could be placed (every other region had just
  failed us), the replicas all went home; as soon as a zone elsewhere is
  eligible again, one anchor is launched there and, once it is READY, one
  home replica is drained.
- On-demand floor: while all our spot replicas sit in one failure domain and
  at most ``floor_zones`` zones are eligible at all (we know of nowhere else
  with capacity, the state that precedes a cloud-wide outage), or while they
  all sit in one zone that has not proven itself (it first served us less
  than ``floor_young`` seconds ago, or serves nothing yet within
  ``floor_young`` of a preemption of ours: on AWS, the state that preceded
  the next total outage), one on-demand replica is kept warm.
  Only replicas the cloud granted count, not this plan's launches: the floor
  drains when an anchor is granted, not when one is merely attempted (a
  refused attempt would otherwise drain the floor for nothing).
- Zone-tolerant spares: with ``tolerant_spares`` spares or more, and while
  the cheap zones known usable (eligible or holding ours, priced within
  ``tolerant_premium`` of the cheapest of them) number at least
  ``tolerant_zones`` x the zones the layout needs (``ceil(replicas /
  spares)``), new replicas go at most ``spares`` to a zone, filling zones
  that hold ours first, then the cheapest
  (:func:`policies.skyhedge_place.tolerant_zones`): any one zone loss then
  leaves the target ready (GCP, +2: 99.94% with N ready at 1.71x the bound,
  against 99.82% at 1.81x with the spares at home). Where capacity is scarce
  (AWS) the condition rarely holds and the home zone plus anchor stays. The
  on-demand floor applies in this layout too; a volatility spare does not
  change the layout.
- On-demand cover for the target, not the spares: on-demand fills the gap
  between the autoscaler target and healthy spot replicas that are READY or
  granted and warming up (STARTING). It launches with the spot replacement
  and drains at the first plan that sees that launch granted (the two would
  become ready together, so it would only cost money); it stays while the
  spot launch is pending or refused, and otherwise drains as spot becomes
  READY. ``od_pending=False`` counts READY spot replicas only.
- Location bookkeeping is SpotHedge's (ACTIVE/PREEMPTED, all reset when fewer
  than two stay ACTIVE), plus interruption notices, which SpotHedge ignores: a
  notice marks its location PREEMPTED, and a replica with an announced kill no
  longer counts, so its replacement (elsewhere) and the on-demand cover launch
  at once while it still serves. A zone that just refused a launch is not
  retried at the same instant (nor for ``retry_after`` seconds).
- Optional, off by default, kept for the measured trade-off curve:
  ``spread_spares`` (with spares and enough usable zones, spread over zones
  at ``price x (1 + stack x ours there)`` instead of home + anchor) and a
  volatility spare (one more spare while ``volatile_preemptions`` happened in
  the last ``volatile_window`` seconds).

State (JSON only) under ``policy_state["skyhedge"]``: ``{"pre": [recent
preemption times], "refused": {"cloud/region/zone": time}, "bad":
{"cloud/region/zone": time of the last loss or refusal}}``; the location
states travel in ``Plan.location_states``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from policies.model import LocationEvent, LocationEventKind, LocationState, ReplicaView
from policies.placement import (
    READY,
    PlacementContext,
    PlacementPolicy,
    PlacementResult,
    drain,
    settle_ondemand,
)
from policies.skyhedge_place import (
    anchors_for,
    choose_anchor,
    choose_location,
    domain,
    home_and_anchors,
    location_key,
    location_states,
    tolerant_zones,
)
from skyctl.lifecycle import EndReason, ReplicaStatus
from skyctl.types import Location, Offering

__all__ = [
    "Params",
    "anchors_for",
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
STARTING = ReplicaStatus.STARTING  # granted by the cloud, warming up


@dataclass(frozen=True)
class Params:
    spare: int = 0  # spare spot replicas when the spec does not set num_overprovision
    anchor_every: int = 4  # one anchor per this many target replicas (0: no anchors)
    premium: float = 1.1  # home and anchor zones cost at most this x the cheapest candidate
    anchor_retry: float = 1800.0  # anchors avoid zones lost or refused this recently (s)
    same_region: bool = True  # no eligible zone in another region: anchor in another zone
    rebalance: bool = True  # place a missing anchor even at full count, then drain a home one
    od_floor: bool = True  # one on-demand replica while spot is in one domain and ...
    floor_zones: int = 1  # ... at most this many zones are eligible
    spread_spares: bool = False  # with spares and enough zones, spread instead
    stack: float = 2.0  # spread mode: price multiplier per replica of ours already in a zone
    spread_margin: int = 0  # spread when usable zones >= target + spares + this
    volatile_preemptions: int = 0  # >0: one more spare while this many recent preemptions
    volatile_window: float = 3600.0  # seconds that count as recent
    retry_after: float = 0.0  # a zone that refused us is avoided for this long (0: this instant)
    od_pending: bool = True  # on-demand cover counts granted (STARTING) spot replicas
    floor_young: float = 3600.0  # floor also while all spot is in a zone serving us < this (s)
    tolerant_spares: int = 2  # with >= this many spares, <= spares replicas per zone (0: never)
    tolerant_zones: float = 2.0  # ... while cheap known-usable zones >= this x the zones needed
    tolerant_premium: float = 1.3  # ... cheap: priced <= this x the cheapest
    tolerant_region: float = 0.0  # ... zone price x (1 + this x ours in its region)


def _healthy(r: ReplicaView) -> bool:
    return r.interruption_at is None


def _recent(
    state: Mapping[str, Any],
    key: str,
    events: Sequence[LocationEvent],
    now: float,
    keep: float,
) -> dict[str, float]:
    """Zone -> time of its last loss or refusal, for those less than ``keep``
    seconds ago (``keep`` 0: those of this instant only)."""

    def fresh(t: float) -> bool:
        return now - t < keep or now == t

    out = {k: float(t) for k, t in state.get(key, {}).items() if fresh(t)}
    for ev in events:
        if ev.spot and ev.kind in _BAD and fresh(ev.at):
            out[location_key(ev.location)] = ev.at
    return out


def _spread(
    ctx: PlacementContext,
    params: Params,
    states: Mapping[Location, LocationState],
    per_zone: dict[Location, int],
    count: int,
) -> list[tuple[Location, str]]:
    out: list[tuple[Location, str]] = []
    for _ in range(count):
        loc = choose_location(ctx.spot_offers, states, per_zone, spread=True, stack=params.stack)
        if loc is None:
            break
        per_zone[loc] = per_zone.get(loc, 0) + 1
        out.append((loc, "spread"))
    return out


def _tolerant(
    params: Params,
    spare: int,
    spot_target: int,
    offers: Mapping[Location, Offering],
    eligible: set[Location],
    per_zone: Mapping[Location, int],
) -> bool:
    """Whether new replicas take the zone-tolerant layout (<= ``spare`` per zone):
    enough spares, and cheap zones known usable (eligible or holding ours) at
    least ``tolerant_zones`` x the zones that layout needs."""
    if params.tolerant_spares <= 0 or spare < params.tolerant_spares or spare <= 0:
        return False
    known = set(eligible) | {loc for loc, n in per_zone.items() if n}
    if not known:
        return False
    cap = params.tolerant_premium * min(offers[loc].price for loc in known)
    cheap = sum(1 for loc in known if offers[loc].price <= cap)
    return cheap >= params.tolerant_zones * math.ceil(spot_target / spare)


def _fragile(
    params: Params,
    spot: Sequence[ReplicaView],
    existing: Mapping[Location, int],
    eligible: set[Location],
    lost_at: Sequence[float],
    now: float,
) -> bool:
    """Whether the on-demand floor is needed: every granted spot replica in one
    failure domain while at most ``floor_zones`` zones are eligible, or in one
    zone that has not proven itself: it first served us less than
    ``floor_young`` seconds ago, or serves nothing yet within ``floor_young``
    seconds of a preemption of ours (``lost_at``; not at a cold start)."""
    zones = {loc for loc, n in existing.items() if n}
    if len({domain(loc) for loc in zones}) < 2 and len(eligible) <= params.floor_zones:
        return True
    if len(zones) >= 2 or params.floor_young <= 0:
        return False
    since = [r.ready_at for r in spot if r.ready_at is not None]
    if since:
        return now - min(since) < params.floor_young
    return any(now - t < params.floor_young for t in lost_at)


def make_skyhedge(p: Params | None = None) -> PlacementPolicy:
    """A SkyHedge policy with parameters ``p`` (the registry uses the defaults)."""
    params = p or Params()

    def skyhedge(ctx: PlacementContext) -> PlacementResult:
        now, events, offers = ctx.now, ctx.obs.events, ctx.spot_offers
        states = location_states(ctx.obs.location_states, list(offers), events)
        keep = max(params.volatile_window, params.floor_young)
        lost_at = [float(t) for t in ctx.state.get("pre", []) if now - t < keep]
        lost_at += [ev.at for ev in events if ev.spot and ev.kind is LocationEventKind.PREEMPTED]
        recent = [t for t in lost_at if now - t < params.volatile_window]
        refused = _recent(ctx.state, "refused", events, now, params.retry_after)
        bad = _recent(ctx.state, "bad", events, now, params.anchor_retry)
        res = PlacementResult(
            location_states=states,
            state={"pre": lost_at[-_KEEP_PREEMPTIONS:], "refused": refused, "bad": bad},
        )
        avoid = {loc for loc in offers if location_key(loc) in refused}
        avoid |= {r.location for r in ctx.replicas if r.spot and not _healthy(r)}
        eligible = {loc for loc in offers if loc not in avoid and location_key(loc) not in bad}

        rp = ctx.obs.spec.service.replica_policy
        spare = ctx.overprovision if rp.num_overprovision is not None else params.spare
        base_spare = spare  # the layout does not flip with a transient volatility spare
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
        existing = dict(per_zone)  # granted replicas, before this plan's launches
        usable = sum(1 for loc in offers if per_zone.get(loc) or states[loc] is ACTIVE)
        spread = params.spread_spares and spare > 0 and usable >= spot_target + params.spread_margin
        tolerant = _tolerant(params, base_spare, need + base_spare, offers, eligible, per_zone)
        anchors = 0
        if not spread and not tolerant and params.anchor_every > 0:
            anchors = max(anchors_for(need, params.anchor_every), min(1, spot_target - 1))
        home = choose_location(
            offers, states, per_zone, spread=False, avoid=avoid, premium=params.premium
        )
        anchored = [r for r in spot if r.location != home]

        def place(zones: dict[Location, int], count: int) -> list[tuple[Location, str]]:
            return home_and_anchors(
                offers,
                states,
                zones,
                count,
                anchors,
                avoid=avoid,
                eligible=eligible,
                premium=params.premium,
                same_region=params.same_region,
            )

        if len(spot) < spot_target:
            count = min(spot_target - len(spot), ctx.max_launches - ctx.overprovision + spare)
            if tolerant:
                chosen = tolerant_zones(
                    offers,
                    states,
                    per_zone,
                    count,
                    base_spare,
                    avoid=avoid,
                    eligible=eligible,
                    premium=params.tolerant_premium,
                    region_weight=params.tolerant_region,
                )
            elif spread:
                chosen = _spread(ctx, params, states, per_zone, count)
            else:
                chosen = place(per_zone, count)
            extra = " +volatile spare" if volatile else ""
            for loc, role in chosen:
                res.spot_launches.append((offers[loc], f"skyhedge: spot in {loc} ({role}){extra}"))
        elif (
            params.rebalance
            and len(spot) == spot_target
            and len({r.location for r in anchored}) < anchors
        ):
            probe = place(dict(per_zone), 1)
            if probe and probe[0][1] == "anchor":
                loc = probe[0][0]
                per_zone[loc] = per_zone.get(loc, 0) + 1
                res.spot_launches.append((offers[loc], f"skyhedge: spot in {loc} (new anchor)"))
        elif len(spot) > spot_target:
            movable = spot
            if params.rebalance and anchored:
                if any(r.status is not READY for r in anchored):
                    movable = []  # a new anchor is warming up: drain once it serves
                else:
                    movable = [r for r in spot if r.location == home] or spot
            res.terminations += drain(
                movable,
                min(len(movable), len(spot) - spot_target),
                EndReason.SCALED_DOWN,
                "skyhedge: spot surplus",
            )

        ready = sum(1 for r in spot if r.status is READY)
        warming = sum(1 for r in spot if r.status is STARTING) if params.od_pending else 0
        od_target = ctx.base_ondemand + max(0, need - ready - warming)
        if (
            params.od_floor
            and (anchors or tolerant)
            and _fragile(params, spot, existing, eligible, lost_at, now)
        ):
            od_target = max(od_target, ctx.base_ondemand + 1)
        od_target = min(ctx.target, od_target)
        return settle_ondemand(
            ctx,
            res,
            ondemand,
            od_target,
            launch_why="skyhedge: on-demand covers missing spot",
            drain_why="skyhedge: spot covers the target again, on-demand drained",
        )

    return skyhedge


skyhedge = make_skyhedge()
