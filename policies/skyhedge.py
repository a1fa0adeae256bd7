"""SkyHedge: our spot placement and on-demand fallback policy.

What it changes against SpotHedge (each measured in ``docs/policies.md``):

- Memory per location, with time: a preemption, a capacity error or a notice
  starts a cooldown that doubles with each strike (strikes are forgotten after
  a quiet period), and adds to a hazard score that decays with a half-life.
  Spot capacity comes back in short bursts (on the AWS V100 trace the median
  run of availability is about an hour, the mean several hours), so a location
  that failed recently is likely to fail again. SpotHedge's PREEMPTED mark has
  no time and is wiped whenever fewer than two locations stay ACTIVE.
- Placement by risk-adjusted price: price x (1 + hazard weight x hazard) x
  (1 + region penalty x our replicas already in that region); a zone hosts a
  second replica only when no free usable zone is left.
- Spares: ``num_overprovision`` spot replicas when the spec sets it, else one;
  one more while fewer than ``calm_usable`` locations are usable.
- Interruption notices are acted on: a replica with an announced kill no
  longer counts, so its replacement launches now, while it still serves.
- On-demand only where spot cannot cover: while calm, on-demand fills the
  gap between the target and the healthy spot replicas that are READY or
  starting; while few locations are usable, it fills the gap to READY ones
  (as SpotHedge) and ``warm_ondemand`` replicas are kept up. Surplus on-demand
  drains as spot becomes READY. Over-provisioned slots never get on-demand.

State (JSON only) under ``policy_state["skyhedge"]``: ``{"loc": {"cloud/region/zone":
{"until": t, "strikes": n, "hazard": h, "t": t}}}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from policies.model import LocationEventKind, LocationState, ReplicaView
from policies.placement import (
    READY,
    PlacementContext,
    PlacementPolicy,
    PlacementResult,
    drain,
    ondemand_launches,
)
from skyctl.lifecycle import EndReason, ReplicaStatus
from skyctl.types import Location, Offering

_BAD = (LocationEventKind.PREEMPTED, LocationEventKind.CAPACITY_ERROR, LocationEventKind.NOTICE)
_STARTING = (ReplicaStatus.PENDING, ReplicaStatus.PROVISIONING, ReplicaStatus.STARTING)


@dataclass(frozen=True)
class Params:
    cooldown: float = 1800.0  # seconds after the first strike; doubles per strike
    max_cooldown: float = 6 * 3600.0
    forget_strikes: float = 12 * 3600.0  # strikes reset after this long without one
    half_life: float = 6 * 3600.0  # of the hazard score
    hazard_weight: float = 0.15  # price multiplier per unit of hazard
    region_penalty: float = 0.25  # price multiplier per replica already in the region
    spare: int = 1  # spare spot replicas when the spec does not set num_overprovision
    calm_usable: int = 4  # fewer usable locations than this: one more spare, hedge on-demand
    warm_ondemand: int = 0  # on-demand replicas kept while fewer than 2 locations are usable
    stack_penalty: float = 2.0  # price multiplier per replica already in the zone
    cooling_penalty: float = 1.0  # price multiplier while a location cools down


def _key(loc: Location) -> str:
    return f"{loc.cloud}/{loc.region}/{loc.zone}"


def _decayed(hazard: float, since: float, now: float, half_life: float) -> float:
    if hazard <= 0.0 or now <= since:
        return hazard
    return hazard * math.pow(0.5, (now - since) / half_life)


class _Memory:
    """Per-location strikes, cooldowns and hazard (a JSON dict inside)."""

    def __init__(self, raw: Mapping[str, Mapping[str, float]], p: Params, now: float) -> None:
        self.mem = {k: dict(v) for k, v in raw.items()}
        self.p = p
        self.now = now

    def record(self, ctx: PlacementContext) -> None:
        p = self.p
        for ev in ctx.obs.events:
            if not ev.spot:
                continue
            m = self.mem.setdefault(
                _key(ev.location), {"until": 0.0, "strikes": 0.0, "hazard": 0.0, "t": 0.0}
            )
            if ev.kind in _BAD:
                at = min(ev.at, self.now)
                if at - m["t"] > p.forget_strikes:
                    m["strikes"] = 0.0
                m["hazard"] = _decayed(m["hazard"], m["t"], at, p.half_life) + 1.0
                m["t"] = at
                m["strikes"] += 1.0
                cooldown = min(p.cooldown * 2.0 ** min(m["strikes"] - 1.0, 20.0), p.max_cooldown)
                m["until"] = max(m["until"], at + cooldown)

    def hazard(self, loc: Location) -> float:
        m = self.mem.get(_key(loc))
        return _decayed(m["hazard"], m["t"], self.now, self.p.half_life) if m else 0.0

    def usable(self, loc: Location) -> bool:
        m = self.mem.get(_key(loc))
        return m is None or self.now >= m["until"]


def choose_location(
    offers: Mapping[Location, Offering], memory: _Memory, in_use: Sequence[Location]
) -> Location | None:
    """Where the next spot replica goes: the lowest risk-adjusted price, where
    price is multiplied by (1 + weight x factor) for the location's hazard, for
    cooling down, for our replicas already in its region and in the zone itself."""
    p = memory.p
    if not offers:
        return None
    per_zone: dict[Location, int] = {}
    regions: dict[tuple[str, str], int] = {}
    for loc in in_use:
        per_zone[loc] = per_zone.get(loc, 0) + 1
        regions[(loc.cloud, loc.region)] = regions.get((loc.cloud, loc.region), 0) + 1

    def score(loc: Location) -> tuple[float, Location]:
        factor = (
            (1.0 + p.hazard_weight * memory.hazard(loc))
            * (1.0 + p.region_penalty * regions.get((loc.cloud, loc.region), 0))
            * (1.0 + p.stack_penalty * per_zone.get(loc, 0))
            * (1.0 if memory.usable(loc) else 1.0 + p.cooling_penalty)
        )
        return (offers[loc].price * factor, loc)

    return min(offers, key=score)


def _healthy(r: ReplicaView) -> bool:
    return r.interruption_at is None


def make_skyhedge(p: Params = Params()) -> PlacementPolicy:
    """A SkyHedge policy with parameters ``p`` (the registry uses the defaults)."""

    def skyhedge(ctx: PlacementContext) -> PlacementResult:
        memory = _Memory(ctx.state.get("loc", {}), p, ctx.now)
        memory.record(ctx)
        usable = [loc for loc in ctx.spot_offers if memory.usable(loc)]
        states = {
            loc: LocationState.ACTIVE if memory.usable(loc) else LocationState.PREEMPTED
            for loc in ctx.spot_offers
        }
        res = PlacementResult(location_states=states, state={"loc": memory.mem})
        calm = len(usable) >= p.calm_usable

        spot = [r for r in ctx.replicas if r.spot and _healthy(r)]
        ondemand = [r for r in ctx.replicas if not r.spot]
        rp = ctx.obs.spec.service.replica_policy
        spare = ctx.overprovision if rp.num_overprovision is not None else p.spare
        if not calm:
            spare += 1
        need = max(0, ctx.target - ctx.base_ondemand)
        spot_target = need + spare if ctx.spot_offers and ctx.target > 0 else 0
        res.spot_target = spot_target

        if len(spot) < spot_target:
            in_use = [r.location for r in spot]
            for _ in range(min(spot_target - len(spot), ctx.max_launches)):
                loc = choose_location(ctx.spot_offers, memory, in_use)
                if loc is None:
                    res.notes.append("skyhedge: every spot location is cooling down")
                    break
                in_use.append(loc)
                res.spot_launches.append((ctx.spot_offers[loc], f"skyhedge: spot in {loc}"))
        elif len(spot) > spot_target:
            res.terminations += drain(
                spot, len(spot) - spot_target, EndReason.SCALED_DOWN, "skyhedge: spot surplus"
            )

        ready = sum(1 for r in spot if r.status is READY)
        coming = sum(1 for r in spot if r.status in _STARTING) + len(res.spot_launches)
        # launch on-demand for what spot cannot cover soon; keep it until READY spot does
        cover = ready + coming if calm else ready
        launch_to = ctx.base_ondemand + max(0, need - cover)
        keep = ctx.base_ondemand + max(0, need - ready)
        if len(usable) < 2:
            launch_to = keep = max(keep, p.warm_ondemand)
        launch_to, keep = min(launch_to, ctx.target), min(keep, ctx.target)
        res.ondemand_target = launch_to
        if len(ondemand) < launch_to:
            res.ondemand_launches = ondemand_launches(
                ctx, launch_to - len(ondemand), "skyhedge: on-demand fallback"
            )
        elif len(ondemand) > keep:
            res.terminations += drain(
                ondemand,
                len(ondemand) - keep,
                EndReason.SCALED_DOWN,
                "skyhedge: spot covers the target again, on-demand drained",
            )
        return res

    return skyhedge


skyhedge = make_skyhedge()


def hazards(state: Mapping[str, Any], now: float, p: Params = Params()) -> dict[str, float]:
    """Current hazard per location key (for status displays and tests)."""
    return {
        k: _decayed(v["hazard"], v["t"], now, p.half_life) for k, v in state.get("loc", {}).items()
    }
