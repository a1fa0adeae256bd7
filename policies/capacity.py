"""Per-location backoff for spot capacity refusals, shared by every placement policy.

Pure, like every policy. A spot launch refused for capacity (or quota, or an
open breaker: a ``CAPACITY_ERROR`` event) puts its location on hold:
:func:`plan <policies.reconcile.plan>` hides the location's spot offerings
from the placement policy until the hold ends, so no policy (SpotHedge,
SkyHedge, the baselines) asks a cloud again and again for capacity it just
refused. The policies keep their own bookkeeping of the same events (SpotHedge
still marks the location PREEMPTED); this only bounds how often one is probed.

- The ``n``-th refusal in a row at a location holds it ``hold(n)``:
  30 s, 60 s, 120 s ... up to an hour (``MAX_HOLD``). A location refusing
  for days is asked once an hour, not every 30 minutes (a 30-minute cap:
  1,264 attempts on spot-local-trace over the AWS V100 trace; 1 h: 1,205;
  longer caps cost more, docs/simulator-notes.md).
- When the hold ends the location is offered again: the next launch there is
  the probe. Refused again, the hold doubles; granted (a ``LAUNCHED`` event),
  the location starts clean. Preemptions do not touch the hold: counting one
  as a refusal (so that SpotHedge's reset of every zone to ACTIVE does not
  send the replacement straight back) cut refusals on the tuning traces but
  lowered availability on held-out ones (docs/simulator-notes.md).
- A spot ask the target does not need (the replicas the service has,
  on-demand fallbacks included, already cover the autoscaler target: the ask
  would only replace an on-demand fallback with spot or restore the spare of
  ``num_overprovision``) is held ``covered_hold(n)``: the same doubling, on
  past the hour to 8 h (``MAX_COVERED_HOLD``). Such an ask is worth a price
  difference or a hedge, and a location that refused 8 times in a row (an
  hour into the streak) is out for long: asked again after 64 min, 2 h 8 min,
  4 h 16 min, then every 8 h, not every hour. Each hold is about as long as
  the streak so far (doubling), as before, and the first seven are the same,
  so a zone out for an hour is asked again as soon (a 4x step overshot a
  1 h outage by 1.8 h: docs/simulator-notes.md). An ask that replaces a needed
  replica keeps ``hold(n)``. On spot-local-trace over the AWS trace this
  took refused asks from 598 to 454 (docs/simulator-notes.md, "Covered asks wait
  longer"). A covered ask's hold is also at least as long as the location has
  been out so far (since its first refusal in a row, ``since`` in the state),
  up to the same 8 h: a zone refused once and asked again five hours later
  (the service had its replicas meanwhile) is out five hours, not "refused
  twice" (60 s). Where on-demand covers spot shortfalls (the spec's
  ``dynamic_ondemand_fallback``, or a policy whose fallback is always on) a
  needed ask's hold is too, up to the hour; without that cover a needed ask
  keeps ``hold(n)`` (waiting would leave the service short). On the AWS trace
  this took refused asks from 454 to 289 on spot-local-trace (docs/simulator-notes.md,
  "Holds as long as the outage so far").
- On-demand offerings are never held (the on-demand fallback is what covers
  spot capacity that is on hold).
- A plan makes at most one spot launch into the locations that refused last
  time (one probe a plan, not one into each).
- The search for spot backs off as a whole too: a plan whose spot launches
  were all refused (nothing granted among them) starts or extends a
  service-wide streak; a grant anywhere ends it. After the first refusal the
  next plan tries elsewhere at once (moving zones is what the policies do);
  from the ``n``-th refusal in a row (n >= 2) no spot launch goes anywhere for
  ``search_hold(n)`` (15 s doubling to an hour: shorter than a refusing
  location's own hold at first, so that the locations not tried yet go before
  the ones that just refused), and then one at a time. Without
  this a cloud short everywhere is asked once per location per hold (9 zones:
  9 refusals where one says as much), and each preemption's replacement walks
  through the refusing zones at once. The fallback covers the gap, as for a
  held location. The service-wide state is ``policy_state["capacity_search"]``.

The state is JSON (``policy_state["capacity"]``, keyed by location: the
refusals in a row, ``since`` the first of them, ``until`` for a needed ask and
``covered_until`` for a covered one), persisted with the plan, so a restart does not forget a hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from policies.model import Launch, LocationEvent, LocationEventKind
from skyctl.types import Location, Offering

STATE_KEY = "capacity"
SEARCH_KEY = "capacity_search"  # the service-wide streak: {"refusals": n, "until": t}
BASE_HOLD = 30.0  # seconds a location is held after its first capacity refusal
MAX_HOLD = 3600.0  # seconds: the longest hold, of a location or of the search
MAX_COVERED_HOLD = 8 * 3600.0  # seconds: the longest hold of a location for a covered ask


def hold(refusals: int) -> float:
    """Seconds a location is held after ``refusals`` capacity refusals in a row."""
    if refusals <= 0:
        return 0.0
    return min(BASE_HOLD * 2.0 ** min(refusals - 1, 32), MAX_HOLD)  # no float overflow


def covered_hold(refusals: int) -> float:
    """Seconds a location is held, after ``refusals`` capacity refusals in a row,
    for a spot ask the target does not need (the target is covered without it)."""
    if refusals <= 0:
        return 0.0
    return min(BASE_HOLD * 2.0 ** min(refusals - 1, 32), MAX_COVERED_HOLD)


def search_hold(refusals: int) -> float:
    """Seconds every spot launch waits after ``refusals`` refused plans in a row:
    none after the first (try elsewhere at once), then 15 s doubling to an hour."""
    if refusals <= 1:
        return 0.0
    return min(BASE_HOLD / 2 * 2.0 ** min(refusals - 2, 32), MAX_HOLD)


def record(
    state: Mapping[str, Any] | None, events: Iterable[LocationEvent], fallback: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """Fold spot launch outcomes into the holds; returns the state and notes.
    ``fallback``: on-demand covers a spot shortfall, so a needed ask's hold too is
    at least the location's outage so far (up to the hour)."""
    out = {k: dict(v) for k, v in (state or {}).items()}
    notes: dict[str, str] = {}
    for ev in events:
        if not ev.spot:
            continue
        key = str(ev.location)
        if ev.kind is LocationEventKind.LAUNCHED:
            out.pop(key, None)
            notes.pop(key, None)
        elif ev.kind is LocationEventKind.CAPACITY_ERROR:
            e = out.setdefault(key, {"refusals": 0, "until": 0.0})
            n = e["refusals"] = int(e["refusals"]) + 1
            out_so_far = ev.at - float(e.setdefault("since", ev.at))  # the streak's start
            wait = max(hold(n), min(out_so_far, MAX_HOLD)) if fallback else hold(n)
            longer = max(covered_hold(n), min(out_so_far, MAX_COVERED_HOLD))
            e["until"] = max(float(e["until"]), ev.at + wait)
            e["covered_until"] = max(_until(e, True), ev.at + longer)
            notes[key] = (
                f"{key}: spot capacity refused {n}x; not tried for {wait:g}s "
                f"({longer:g}s while the target is covered without it)"
            )
    return out, list(notes.values())


def record_search(
    state: Mapping[str, Any] | None, events: Iterable[LocationEvent]
) -> tuple[dict[str, Any], list[str]]:
    """Fold one observation's spot launch outcomes into the service-wide streak.

    Refused with nothing granted: one more refusal in a row (however many
    locations refused together: one plan's launches are one probe); anything
    granted: the streak ends."""
    out = dict(state or {})
    refused_at: float | None = None
    for ev in events:
        if not ev.spot:
            continue
        if ev.kind is LocationEventKind.LAUNCHED:
            return {}, []
        if ev.kind is LocationEventKind.CAPACITY_ERROR:
            refused_at = ev.at if refused_at is None else max(refused_at, ev.at)
    if refused_at is None:
        return out, []
    n = int(out.get("refusals", 0)) + 1
    wait = search_hold(n)
    until = max(float(out.get("until", 0.0)), refused_at + wait)
    note = f"spot refused {n}x in a row wherever tried; no spot launch for {wait:g}s"
    return {"refusals": n, "until": until}, [note] if wait else []


def searching(state: Mapping[str, Any] | None, now: float) -> bool:
    """Spot may be asked for at ``now`` (the service-wide streak's hold is over)."""
    return float((state or {}).get("until", 0.0)) <= now


def backing_off(state: Mapping[str, Any] | None) -> bool:
    """The search backs off as a whole: two or more refused plans in a row."""
    return int((state or {}).get("refusals", 0)) >= 2


def _until(e: Mapping[str, Any], covered: bool) -> float:
    """When a location's hold ends, for a covered ask or a needed one (a state
    written before covered holds existed has ``until`` only)."""
    until = float(e.get("until", 0.0))
    return max(until, float(e.get("covered_until", until))) if covered else until


def held(state: Mapping[str, Any], now: float, covered: bool = False) -> frozenset[Location]:
    """The locations whose spot offerings are on hold at ``now``; ``covered``: for
    a spot ask the target does not need (the longer holds)."""
    return frozenset(Location.parse(k) for k, e in state.items() if _until(e, covered) > now)


def available(
    offerings: Iterable[Offering], state: Mapping[str, Any], now: float, covered: bool = False
) -> tuple[Offering, ...]:
    """``offerings`` without the spot ones at locations on hold."""
    out = held(state, now, covered)
    return tuple(o for o in offerings if not (o.spot and o.location in out))


def one_probe_each(
    launches: Iterable[Launch], state: Mapping[str, Any], search: Mapping[str, Any] | None = None
) -> list[Launch]:
    """``launches`` with at most one spot launch into the locations that refused
    last time (one probe a plan, not one into each), and at most one spot
    launch in all while spot is refused wherever tried (the service-wide
    streak)."""
    out: list[Launch] = []
    one = backing_off(search)
    spot = probes = 0
    for la in launches:
        if la.offering.spot:
            suspect = str(la.offering.location) in state
            if (one and spot) or (suspect and probes):
                continue
            probes += suspect
            spot += 1
        out.append(la)
    return out


def next_probe(
    state: Mapping[str, Any],
    now: float,
    search: Mapping[str, Any] | None = None,
    covered: bool = False,
) -> float | None:
    """When spot may next be probed (None: nothing on hold): the end of the
    service-wide hold, else the earliest location hold to end (``covered``: the
    holds of a covered ask)."""
    wide = float((search or {}).get("until", 0.0))
    if wide > now:
        return wide
    ends = [_until(e, covered) for e in state.values()]
    return min((t for t in ends if t > now), default=None)
