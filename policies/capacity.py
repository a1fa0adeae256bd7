"""Per-location backoff for spot capacity refusals, shared by every placement policy.

Pure, like every policy. A spot launch refused for capacity (or quota, or an
open breaker: a ``CAPACITY_ERROR`` event) puts its location on hold:
:func:`plan <policies.reconcile.plan>` hides the location's spot offerings
from the placement policy until the hold ends, so no policy (SpotHedge,
SkyHedge, the baselines) asks a cloud again and again for capacity it just
refused. The policies keep their own bookkeeping of the same events (SpotHedge
still marks the location PREEMPTED); this only bounds how often one is probed.

- The ``n``-th refusal in a row at a location holds it ``backoff(n)``:
  30 s, 60 s, 120 s ... up to 30 minutes.
- When the hold ends the location is offered again: the next launch there is
  the probe. Refused again, the hold doubles; granted (a ``LAUNCHED`` event),
  the location starts clean. Preemptions do not touch the hold (placement
  moves away on its own; the refusal that follows starts the backoff).
- A probe is one launch: a plan makes at most one spot launch into a location
  that refused last time, however many the policy asked for there.
- On-demand offerings are never held (the on-demand fallback is what covers
  spot capacity that is on hold).

The state is JSON (``policy_state["capacity"]``, keyed by location), persisted
with the plan, so a restart does not forget a hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from policies.model import Launch, LocationEvent, LocationEventKind
from skyctl.types import Location, Offering

STATE_KEY = "capacity"
BASE_HOLD = 30.0  # seconds a location is held after its first capacity refusal
MAX_HOLD = 1800.0


def hold(refusals: int) -> float:
    """Seconds a location is held after ``refusals`` capacity refusals in a row."""
    if refusals <= 0:
        return 0.0
    return min(BASE_HOLD * 2.0 ** (refusals - 1), MAX_HOLD)


def record(
    state: Mapping[str, Any] | None, events: Iterable[LocationEvent]
) -> tuple[dict[str, Any], list[str]]:
    """Fold spot launch outcomes into the holds; returns the state and notes."""
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
            e["refusals"] = int(e["refusals"]) + 1
            wait = hold(e["refusals"])
            e["until"] = max(float(e["until"]), ev.at + wait)
            notes[key] = f"{key}: spot capacity refused {e['refusals']}x; not tried for {wait:g}s"
    return out, list(notes.values())


def held(state: Mapping[str, Any], now: float) -> frozenset[Location]:
    """The locations whose spot offerings are on hold at ``now``."""
    return frozenset(
        Location.parse(k) for k, e in state.items() if float(e.get("until", 0.0)) > now
    )


def available(
    offerings: Iterable[Offering], state: Mapping[str, Any], now: float
) -> tuple[Offering, ...]:
    """``offerings`` without the spot ones at locations on hold."""
    out = held(state, now)
    return tuple(o for o in offerings if not (o.spot and o.location in out))


def one_probe_each(launches: Iterable[Launch], state: Mapping[str, Any]) -> list[Launch]:
    """``launches`` with at most one spot launch into each location that refused last time."""
    out: list[Launch] = []
    probed: set[str] = set()
    for la in launches:
        key = str(la.offering.location)
        if la.offering.spot and key in state:
            if key in probed:
                continue
            probed.add(key)
        out.append(la)
    return out


def next_probe(state: Mapping[str, Any], now: float) -> float | None:
    """When the earliest hold ends (None: nothing on hold)."""
    ends = [float(e.get("until", 0.0)) for e in state.values()]
    return min((t for t in ends if t > now), default=None)
