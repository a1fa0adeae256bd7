"""Online estimates of spot risk, from what one service's controller sees.

Pure: :func:`update` takes the previous estimates (JSON, from ``policy_state``),
one observation and ``now``, and returns the new estimates; nothing else is
read. What is estimated, per location key ``cloud/region/zone``:

- **loss rate** (per hour): loss *events* (one or more of our spot replicas
  preempted there at one instant) over the hours we held at least one spot
  replica there. Shrunk towards the region's rate, and the region's towards
  the global rate, with ``PRIOR_HOURS`` of pseudo-exposure each (a zone we
  barely used is assumed to behave like its region);
- **refusal probability**: capacity errors over launch attempts there, with a
  prior of one refusal in ``PRIOR_ATTEMPTS`` attempts;
- **outage length** (hours): from a zone's first bad event (loss or refusal)
  to its next granted launch, averaged, with a prior of ``PRIOR_OUTAGE_H``;
- per region, the **joint loss rate**: losses of ours after which two or
  more of its zones were bad (lost or refused us) at that same instant, over
  the hours we held replicas in at least two of its zones (with a prior of
  ``PRIOR_HOURS``): the correlation between zones;
- the **cold start** (seconds): mean launch-to-READY time of our replicas,
  with a prior of ``PRIOR_COLD_S`` weighing as one observation;
- the **notice lead** (seconds): the mean warning a loss came with (0 for a
  loss without a notice), with a prior of one loss without notice.

Notices count as losses at the instant of the notice (the replica is as good
as gone); the preemption that follows in the same zone within
``NOTICE_MERGE_S`` is the same event.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from policies.model import LocationEventKind, ServiceObservation
from skyctl.lifecycle import UP
from skyctl.types import Location

PRIOR_HOURS = 12.0  # pseudo-exposure behind each level's rate
PRIOR_GLOBAL_EVENTS = 0.5  # and behind the global rate: 0.5 events in PRIOR_HOURS
PRIOR_ATTEMPTS = 4.0  # refusal prior: one refusal in this many attempts
PRIOR_OUTAGE_H = 0.5
PRIOR_COLD_S = 180.0
NOTICE_MERGE_S = 900.0

# per-zone record, a JSON list: index -> meaning
_EXP, _LOSS, _TRY, _REFUSE, _BAD_SINCE, _OUT_SUM, _OUT_N, _LAST_LOSS, _NOTICED_UNTIL = range(9)


@functools.lru_cache(maxsize=4096)
def key(loc: Location) -> str:
    return f"{loc.cloud}/{loc.region}/{loc.zone}"


@functools.lru_cache(maxsize=4096)
def region_key(loc: Location) -> str:
    return f"{loc.cloud}/{loc.region}"


@dataclass(frozen=True)
class Risk:
    """What the estimates say about one location now."""

    loss_rate: float  # loss events per hour while we hold replicas there
    joint_rate: float  # its region's joint (multi-zone) loss events per hour
    refusal: float  # probability a launch there is refused now
    outage_h: float  # expected length of an outage there


def _zone(state: dict[str, Any], k: str) -> list[float]:
    z = state["z"].get(k)
    if z is None:
        z = [0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, -1e18, -1e18]
        state["z"][k] = z
    return z


def fresh() -> dict[str, Any]:
    return {
        "z": {},
        "r": {},
        "cold": [PRIOR_COLD_S, 1.0],
        "lead": [0.0, 1.0],
        "t": None,
        "held": [],
    }


def update(
    previous: Mapping[str, Any] | None, obs: ServiceObservation, now: float
) -> dict[str, Any]:
    """The estimates after ``obs`` (see the module docstring); ``previous`` is not changed."""
    state: dict[str, Any] = fresh()
    if previous:
        state["z"] = {k: list(v) for k, v in previous.get("z", {}).items()}
        state["r"] = {k: list(v) for k, v in previous.get("r", {}).items()}
        state["cold"] = list(previous.get("cold", state["cold"]))
        state["lead"] = list(previous.get("lead", state["lead"]))
        state["t"] = previous.get("t")
        state["held"] = list(previous.get("held", []))
    last = state["t"]
    # exposure: zones (and regions with >= 2 zones) we held over [last, now)
    if last is not None and now > last:
        dt_h = (now - last) / 3600.0
        per_region: dict[str, int] = {}
        for k in state["held"]:
            _zone(state, k)[_EXP] += dt_h
            rk = k.rsplit("/", 1)[0]
            per_region[rk] = per_region.get(rk, 0) + 1
        for rk, n in per_region.items():
            if n >= 2:
                state["r"].setdefault(rk, [0.0, 0.0])[0] += dt_h
    # events, grouped by instant
    bad_at: dict[float, set[str]] = {}
    lost_at: set[float] = set()
    for ev in obs.events:
        if not ev.spot:
            continue
        k = key(ev.location)
        z = _zone(state, k)
        if ev.kind in (LocationEventKind.PREEMPTED, LocationEventKind.NOTICE):
            announced = ev.kind is LocationEventKind.PREEMPTED and ev.at <= z[_NOTICED_UNTIL]
            if ev.at != z[_LAST_LOSS] and not announced:
                z[_LOSS] += 1
                state["lead"][0] += _lead(obs, ev.location, ev.at, ev.kind)
                state["lead"][1] += 1
            if ev.kind is LocationEventKind.NOTICE:
                z[_NOTICED_UNTIL] = ev.at + NOTICE_MERGE_S
            else:
                z[_NOTICED_UNTIL] = -1e18
            z[_LAST_LOSS] = ev.at
            if z[_BAD_SINCE] < 0:
                z[_BAD_SINCE] = ev.at
            bad_at.setdefault(ev.at, set()).add(k)
            lost_at.add(ev.at)
        elif ev.kind is LocationEventKind.CAPACITY_ERROR:
            z[_TRY] += 1
            z[_REFUSE] += 1
            if z[_BAD_SINCE] < 0:
                z[_BAD_SINCE] = ev.at
            bad_at.setdefault(ev.at, set()).add(k)
        elif ev.kind is LocationEventKind.LAUNCHED:
            z[_TRY] += 1
            if z[_BAD_SINCE] >= 0:
                z[_OUT_SUM] += max(0.0, ev.at - z[_BAD_SINCE]) / 3600.0
                z[_OUT_N] += 1
                z[_BAD_SINCE] = -1.0
    for at, keys in bad_at.items():
        if at not in lost_at:
            continue  # refusals alone: our own probing, not a loss
        regions: dict[str, int] = {}
        for k in keys:
            rk = k.rsplit("/", 1)[0]
            regions[rk] = regions.get(rk, 0) + 1
        for rk, n in regions.items():
            if n >= 2:
                state["r"].setdefault(rk, [0.0, 0.0])[1] += 1
    # cold starts seen since the last plan
    for r in obs.replicas:
        if r.ready_at is not None and (last is None or r.ready_at > last) and r.ready_at <= now:
            state["cold"][0] += r.ready_at - r.created_at
            state["cold"][1] += 1
    state["t"] = now
    state["held"] = sorted({key(r.location) for r in obs.replicas if r.spot and r.status in UP})
    return state


def _lead(obs: ServiceObservation, loc: Location, at: float, kind: LocationEventKind) -> float:
    if kind is not LocationEventKind.NOTICE:
        return 0.0
    kills = [
        r.interruption_at - at
        for r in obs.replicas
        if r.location == loc and r.interruption_at is not None and r.interruption_at >= at
    ]
    return max(kills, default=0.0)


def notice_lead_s(state: Mapping[str, Any]) -> float:
    total, n = state.get("lead", (0.0, 1.0))
    return float(total) / float(n)


def cold_start_s(state: Mapping[str, Any]) -> float:
    total, n = state.get("cold", (PRIOR_COLD_S, 1.0))
    return float(total) / float(n)


def _rates(state: Mapping[str, Any]) -> tuple[float, dict[str, tuple[float, float]]]:
    """The global rate, and per region (exposure, loss events) summed over its zones."""
    exp = loss = 0.0
    regions: dict[str, tuple[float, float]] = {}
    for k, z in state.get("z", {}).items():
        exp += z[_EXP]
        loss += z[_LOSS]
        rk = k.rsplit("/", 1)[0]
        e, n = regions.get(rk, (0.0, 0.0))
        regions[rk] = (e + z[_EXP], n + z[_LOSS])
    g = (loss + PRIOR_GLOBAL_EVENTS) / (exp + PRIOR_HOURS)
    return g, regions


def risks(state: Mapping[str, Any], locations: list[Location], now: float) -> dict[Location, Risk]:
    """The current :class:`Risk` of each location (unseen ones get their region's,
    else the global prior)."""
    g, regions = _rates(state)
    out: dict[Location, Risk] = {}
    zones = state.get("z", {})
    joint = state.get("r", {})
    for loc in locations:
        rk = region_key(loc)
        re, rn = regions.get(rk, (0.0, 0.0))
        region_rate = (rn + PRIOR_HOURS * g) / (re + PRIOR_HOURS)
        z = zones.get(key(loc))
        if z is None:
            rate, refusal, outage, bad_since = (
                region_rate,
                1.0 / PRIOR_ATTEMPTS,
                PRIOR_OUTAGE_H,
                -1.0,
            )
        else:
            rate = (z[_LOSS] + PRIOR_HOURS * region_rate) / (z[_EXP] + PRIOR_HOURS)
            refusal = (z[_REFUSE] + 1.0) / (z[_TRY] + PRIOR_ATTEMPTS)
            outage = (z[_OUT_SUM] + PRIOR_OUTAGE_H) / (z[_OUT_N] + 1.0)
            bad_since = z[_BAD_SINCE]
        if bad_since >= 0:
            # inside an outage: still out with probability exp(-elapsed / mean length)
            elapsed_h = max(0.0, now - bad_since) / 3600.0
            refusal = max(refusal, math.exp(-elapsed_h / max(outage, 1e-6)))
        jr = joint.get(rk)
        joint_rate = (jr[1] / (jr[0] + PRIOR_HOURS)) if jr else 0.0
        out[loc] = Risk(rate, joint_rate, refusal, outage)
    return out


def p_all_lost(
    state: Mapping[str, Any], held: list[Location], window_h: float, now: float
) -> float:
    """The probability that every location in ``held`` (where our spot replicas
    are) loses them within ``window_h`` hours: per region, its joint loss within
    the window, or else each held zone's own loss (``1 - exp(-rate x window)``,
    zones independent given no joint event); regions independent. 0 for nothing held."""
    zones = sorted(set(held), key=key)
    if not zones or window_h <= 0:
        return 0.0
    rk = risks(state, zones, now)
    by_region: dict[str, list[Location]] = {}
    for loc in zones:
        by_region.setdefault(region_key(loc), []).append(loc)
    p_all = 1.0
    for locs in by_region.values():
        own = 1.0
        for loc in locs:
            own *= 1.0 - math.exp(-rk[loc].loss_rate * window_h)
        if len(locs) >= 2:
            joint = 1.0 - math.exp(-rk[locs[0]].joint_rate * window_h)
            own = joint + (1.0 - joint) * own
        p_all *= own
    return p_all
