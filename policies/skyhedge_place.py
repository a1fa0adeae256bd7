"""Where SkyHedge puts spot replicas: location bookkeeping and zone choice (pure).

:mod:`policies.skyhedge` decides how many replicas of each kind; this module
answers where the next spot replica goes:

- :func:`location_states`: SpotHedge's ACTIVE/PREEMPTED bookkeeping, with an
  interruption notice counted as a preemption of its zone.
- :func:`choose_location`: the home zone (concentrating) or the cheapest
  zone weighted by how many of ours it already holds (spreading).
- :func:`choose_anchor`: a zone in another failure domain (another region,
  or another cloud) than the home zone and the other anchors, so that one
  zone or region loss never takes every replica; failing that, another zone.
- :func:`home_and_anchors`: zones for a batch of new replicas, anchors first.
- :func:`tolerant_zones`: zones for a batch of new replicas when there are
  spares enough to survive a zone loss: at most ``cap`` replicas per zone.

A failure domain is ``(cloud, region)``: zone losses are strongly correlated
within a region, far less across regions.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

from policies.model import LocationEvent, LocationEventKind, LocationState
from policies.placement import hedge_states
from skyctl.types import Location, Offering

ACTIVE = LocationState.ACTIVE
Domain = tuple[str, str]


def location_key(loc: Location) -> str:
    return f"{loc.cloud}/{loc.region}/{loc.zone}"


def domain(loc: Location) -> Domain:
    """The failure domain of ``loc``: its cloud and region."""
    return (loc.cloud, loc.region)


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


def _pool(
    candidates: Sequence[Location],
    states: Mapping[Location, LocationState],
    avoid: Collection[Location],
) -> list[Location]:
    """``candidates`` not avoided (else all), ACTIVE ones only (else all of those)."""
    allowed = [loc for loc in candidates if loc not in avoid] or list(candidates)
    return [loc for loc in allowed if states.get(loc, ACTIVE) is ACTIVE] or allowed


def choose_location(
    offers: Mapping[Location, Offering],
    states: Mapping[Location, LocationState],
    per_zone: Mapping[Location, int],
    *,
    spread: bool,
    stack: float = 2.0,
    avoid: Collection[Location] = (),
    premium: float | None = None,
) -> Location | None:
    """Where the next spot replica goes; None without offers.

    Concentrating: the ACTIVE zone holding most of ours (the cheaper on a tie),
    among zones priced at most ``premium`` x the cheapest candidate (any
    price when None), else the cheapest ACTIVE zone. Spreading: the ACTIVE zone with the lowest
    ``price x (1 + stack x ours there)``. Zones in ``avoid`` (one just refused
    a launch, or holds a replica with an announced kill) come last; without an
    ACTIVE zone, the same rule over all zones."""
    if not offers:
        return None
    pool = _pool(list(offers), states, avoid)
    if spread:
        return min(
            pool, key=lambda loc: (offers[loc].price * (1 + stack * per_zone.get(loc, 0)), loc)
        )
    if premium is not None:
        cap = premium * min(offers[loc].price for loc in pool)
        pool = [loc for loc in pool if offers[loc].price <= cap]
    return min(pool, key=lambda loc: (-per_zone.get(loc, 0), offers[loc].price, loc))


def choose_anchor(
    offers: Mapping[Location, Offering],
    eligible: Collection[Location],
    per_zone: Mapping[Location, int],
    *,
    home: Location,
    premium: float | None = None,
    same_region: bool = True,
) -> Location | None:
    """A zone for a new anchor replica, or None (it then joins the home zone).

    Candidates are ``eligible`` zones (the caller's test: no recent loss or
    refusal there) other than ``home``, priced at most ``premium`` x the
    cheapest eligible zone (any price when None). First choice: the cheapest
    candidate in a failure domain holding none of ours (not the home zone's
    region, nor another anchor's). Failing that, with ``same_region``, the
    cheapest candidate zone holding none of ours: a zone loss is then still
    not a total outage, though a region loss would be."""
    ok = [loc for loc in offers if loc in eligible and loc != home]
    if not ok:
        return None
    cap = premium * min(offers[loc].price for loc in ok) if premium is not None else None
    ok = [loc for loc in ok if cap is None or offers[loc].price <= cap]
    taken = {domain(loc) for loc, n in per_zone.items() if n} | {domain(home)}
    pool = [loc for loc in ok if domain(loc) not in taken]
    if not pool and same_region:
        pool = [loc for loc in ok if not per_zone.get(loc)]
    if not pool:
        return None
    return min(pool, key=lambda loc: (offers[loc].price, loc))


def anchors_for(target: int, every: int) -> int:
    """How many anchors ``target`` replicas get: ``ceil(target / every)``, at
    least one whenever there are two or more replicas, never all of them; none
    when ``every`` is 0."""
    if every <= 0 or target < 2:
        return 0
    return min(target - 1, max(1, math.ceil(target / every)))


def home_and_anchors(
    offers: Mapping[Location, Offering],
    states: Mapping[Location, LocationState],
    per_zone: dict[Location, int],
    count: int,
    anchors: int,
    *,
    avoid: Collection[Location],
    eligible: Collection[Location],
    premium: float | None,
    same_region: bool = True,
) -> list[tuple[Location, str]]:
    """Zones (and roles) for ``count`` new spot replicas: an anchor while fewer
    than ``anchors`` zones other than the home zone hold ours, else the home
    zone (:func:`choose_location`, concentrating). ``per_zone`` is updated."""
    home = choose_location(offers, states, per_zone, spread=False, avoid=avoid, premium=premium)
    if home is None:
        return []
    out: list[tuple[Location, str]] = []
    for _ in range(count):
        loc: Location | None = None
        if sum(1 for z, n in per_zone.items() if n and z != home) < anchors:
            loc = choose_anchor(
                offers, eligible, per_zone, home=home, premium=premium, same_region=same_region
            )
        role = "anchor" if loc is not None else "home zone"
        where = loc if loc is not None else home
        per_zone[where] = per_zone.get(where, 0) + 1
        out.append((where, role))
    return out


def tolerant_zones(
    offers: Mapping[Location, Offering],
    states: Mapping[Location, LocationState],
    per_zone: dict[Location, int],
    count: int,
    cap: int,
    *,
    avoid: Collection[Location],
    eligible: Collection[Location],
    premium: float,
    region_weight: float,
) -> list[tuple[Location, str]]:
    """Zones for ``count`` new spot replicas, at most ``cap`` per zone, so that
    losing any one zone costs at most ``cap`` replicas. Candidates, first
    non-empty set wins: zones with room that are ``eligible`` (no recent loss
    or refusal), else ACTIVE and not avoided, else not avoided, else any zone;
    then only those priced at most ``premium`` x the cheapest of them. Among
    those, a zone already holding ours (filling it to ``cap`` keeps the number
    of zones, so of exposures, low), then the lowest ``price x (1 +
    region_weight x ours in its region)`` (other regions first: losses are
    correlated within a region). ``per_zone`` is updated."""
    out: list[tuple[Location, str]] = []
    for _ in range(count):
        room = [loc for loc in offers if per_zone.get(loc, 0) < cap]
        tiers = [
            [loc for loc in room if loc in eligible],
            [loc for loc in room if loc not in avoid and states.get(loc, ACTIVE) is ACTIVE],
            [loc for loc in room if loc not in avoid],
            list(offers),
        ]
        pool = next((t for t in tiers if t), [])
        if not pool:
            break
        cheapest = min(offers[loc].price for loc in pool)
        pool = [loc for loc in pool if offers[loc].price <= premium * cheapest]
        in_region: dict[Domain, int] = {}
        for z, n in per_zone.items():
            in_region[domain(z)] = in_region.get(domain(z), 0) + n
        score = {
            loc: (
                0 if per_zone.get(loc) else 1,
                offers[loc].price * (1 + region_weight * in_region.get(domain(loc), 0)),
                loc,
            )
            for loc in pool
        }
        where = min(pool, key=score.__getitem__)
        per_zone[where] = per_zone.get(where, 0) + 1
        out.append((where, "zone-tolerant"))
    return out
