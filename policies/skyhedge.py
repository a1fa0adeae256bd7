"""SkyHedge: our spot placement and on-demand fallback policy.

What it changes against SpotHedge, each change measured on the real traces
(``benchmarks/policies.py``, ``docs/policies.md``):

- Time instead of a flag: a preemption, a capacity error or an interruption
  notice puts the location on a cooldown (``cooldown`` seconds since its last
  bad event). Spot capacity comes back in short bursts (on the AWS V100 trace
  a zone's median run of availability is about an hour), so a location that
  failed recently is likely to fail again; once the cooldown has passed it is
  usable again. SpotHedge's PREEMPTED mark has no time: it stays until a
  launch there succeeds or until fewer than two locations are ACTIVE, when all
  are wiped at once.
- Price-aware spreading: the next spot replica goes to the usable location
  with the lowest ``price x (1 + stack x our replicas already there)``. Zones
  are spread while their prices are close (AWS), but a second replica in a
  cheap zone beats a zone several times dearer (GCP's asia-south2 at 3.7x),
  where SpotHedge's "any free ACTIVE zone" pays whatever it costs. When every
  location is cooling down, the same score picks among all of them.
- Spares: ``num_overprovision`` when the spec sets it, else ``spare`` (one);
  one more while at least ``volatile_preemptions`` preemptions happened in the
  last ``volatile_window`` seconds (0 turns this off).
- On-demand only for the target: on-demand fills the gap between the
  autoscaler target and READY healthy spot replicas (SpotHedge also fills the
  spare slot's gap up to the target) and drains as spot becomes READY.
- Interruption notices are acted on: a replica with an announced kill no
  longer counts, so its replacement (and any on-demand cover) launches now
  while it still serves; SkyServe ignores notices.

State (JSON only) under ``policy_state["skyhedge"]``: ``{"bad": {"cloud/region/zone":
time of the last bad event}, "pre": [recent preemption times]}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
from skyctl.lifecycle import EndReason
from skyctl.types import Location, Offering

_BAD = (LocationEventKind.PREEMPTED, LocationEventKind.CAPACITY_ERROR, LocationEventKind.NOTICE)
_KEEP_PREEMPTIONS = 50


@dataclass(frozen=True)
class Params:
    cooldown: float = 1800.0  # seconds a location stays unused after a bad event
    stack: float = 2.0  # price multiplier per replica of ours already in the location
    spare: int = 1  # spare spot replicas when the spec does not set num_overprovision
    volatile_preemptions: int = 0  # >0: one more spare while this many recent preemptions
    volatile_window: float = 3600.0  # seconds that count as recent


def location_key(loc: Location) -> str:
    return f"{loc.cloud}/{loc.region}/{loc.zone}"


def choose_location(
    offers: Mapping[Location, Offering],
    last_bad: Mapping[str, float],
    in_use: Sequence[Location],
    now: float,
    p: Params,
) -> Location | None:
    """The usable location (cooldown over) with the lowest stacked price; when
    none is usable, the lowest stacked price among all. None without offers."""
    if not offers:
        return None
    per_zone: dict[Location, int] = {}
    for loc in in_use:
        per_zone[loc] = per_zone.get(loc, 0) + 1

    def score(loc: Location) -> tuple[int, float, Location]:
        cooling = now - last_bad.get(location_key(loc), float("-inf")) < p.cooldown
        return (int(cooling), offers[loc].price * (1.0 + p.stack * per_zone.get(loc, 0)), loc)

    return min(offers, key=score)


def _healthy(r: ReplicaView) -> bool:
    return r.interruption_at is None


def make_skyhedge(p: Params | None = None) -> PlacementPolicy:
    """A SkyHedge policy with parameters ``p`` (the registry uses the defaults)."""
    params = p or Params()

    def skyhedge(ctx: PlacementContext) -> PlacementResult:
        now = ctx.now
        last_bad = {k: float(v) for k, v in ctx.state.get("bad", {}).items()}
        recent = [float(t) for t in ctx.state.get("pre", []) if now - t < params.volatile_window]
        for ev in ctx.obs.events:
            if ev.spot and ev.kind in _BAD:
                key = location_key(ev.location)
                last_bad[key] = max(last_bad.get(key, ev.at), ev.at)
                if ev.kind is LocationEventKind.PREEMPTED:
                    recent.append(ev.at)
        states = {
            loc: (
                LocationState.PREEMPTED
                if now - last_bad.get(location_key(loc), float("-inf")) < params.cooldown
                else LocationState.ACTIVE
            )
            for loc in ctx.spot_offers
        }
        res = PlacementResult(
            location_states=states,
            state={"bad": last_bad, "pre": recent[-_KEEP_PREEMPTIONS:]},
        )

        rp = ctx.obs.spec.service.replica_policy
        spare = ctx.overprovision if rp.num_overprovision is not None else params.spare
        volatile = 0 < params.volatile_preemptions <= len(recent)
        if volatile:
            spare += 1
        need = max(0, ctx.target - ctx.base_ondemand)
        spot_target = need + spare if ctx.spot_offers and ctx.target > 0 else 0
        res.spot_target = spot_target
        res.spare = spare
        cap = ctx.max_launches - ctx.overprovision + spare

        spot = [r for r in ctx.replicas if r.spot and _healthy(r)]
        ondemand = [r for r in ctx.replicas if not r.spot]
        if len(spot) < spot_target:
            in_use = [r.location for r in spot]
            for _ in range(min(spot_target - len(spot), cap)):
                loc = choose_location(ctx.spot_offers, last_bad, in_use, now, params)
                if loc is None:
                    break
                in_use.append(loc)
                why = f"skyhedge: spot in {loc}" + (" (volatile: extra spare)" if volatile else "")
                res.spot_launches.append((ctx.spot_offers[loc], why))
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
