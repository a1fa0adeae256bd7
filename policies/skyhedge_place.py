"""Where SkyHedge puts spot replicas: location bookkeeping and zone choice (pure).

:mod:`policies.skyhedge` decides how many replicas of each kind; this module
answers where the next spot replica goes:

- :func:`location_states`: SpotHedge's ACTIVE/PREEMPTED bookkeeping, with an
  interruption notice counted as a preemption of its zone.
- :func:`choose_location`: the home zone (concentrating) or the cheapest
  zone weighted by how many of ours it already holds (spreading).
- :func:`choose_anchor`: a zone in another failure domain (another region,
  or another cloud) than the home zone and the other anchors, so that one
  zone or region loss never takes every replica.

A failure domain is ``(cloud, region)``: zone losses are strongly correlated
within a region, far less across regions.
"""

from __future__ import annotations

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
    taken: Collection[Domain],
    premium: float | None = None,
) -> Location | None:
    """A zone for an anchor replica: an ``eligible`` zone (the caller's test:
    no recent loss or refusal there) outside the failure domains in ``taken``
    (the home zone's and the other anchors'), priced at most ``premium`` x the
    cheapest eligible zone (any price when None). Among those, one that
    already holds ours (an anchor stays where it has lasted), else the
    cheapest. None when there is no such zone: the replica then joins the home
    zone rather than try a zone that was just out."""
    ok = [loc for loc in offers if loc in eligible]
    if not ok:
        return None
    cap = premium * min(offers[loc].price for loc in ok) if premium is not None else None
    pool = [
        loc for loc in ok if domain(loc) not in taken and (cap is None or offers[loc].price <= cap)
    ]
    if not pool:
        return None
    return min(pool, key=lambda loc: (not per_zone.get(loc), offers[loc].price, loc))
