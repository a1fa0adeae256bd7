"""Every spot launch outcome a replay's plans see, per location, and the capacity
holds they must respect (policies/capacity.py): for the launch-storm tests of
``skyctl sim`` on the shipped and on generated traces."""

from __future__ import annotations

from collections import defaultdict

import pytest

from policies import capacity
from policies.model import LocationEventKind, Plan, ServiceObservation
from skyctl.sim import engine

#: location -> [(plan number, at, refused)]; a plan sees the previous plan's launches
Seen = dict[str, list[tuple[int, float, bool]]]


def watch(monkeypatch: pytest.MonkeyPatch) -> Seen:
    """Start recording the spot launches (granted or refused) every plan is told of."""
    seen: Seen = defaultdict(list)
    decide = engine.decide
    plans = 0

    def watching(obs: ServiceObservation, now: float) -> Plan:
        nonlocal plans
        plans += 1
        for ev in obs.events:
            if ev.spot and ev.kind in (
                LocationEventKind.CAPACITY_ERROR,
                LocationEventKind.LAUNCHED,
            ):
                seen[str(ev.location)].append(
                    (plans, ev.at, ev.kind is LocationEventKind.CAPACITY_ERROR)
                )
        return decide(obs, now)

    monkeypatch.setattr(engine, "decide", watching)
    return seen


def refused(seen: Seen) -> int:
    return sum(no for outcomes in seen.values() for *_, no in outcomes)


def assert_holds_respected(seen: Seen) -> None:
    """No location is asked for spot again before its capacity hold ends (one plan's
    launches into one place are one probe)."""
    for where, outcomes in seen.items():
        streak, last, batch = 0, 0.0, -1
        for plan_no, at, no in outcomes:
            if not no:
                streak = 0
            elif plan_no != batch:
                if streak:
                    assert at - last >= capacity.hold(streak) - 1e-6, (where, streak, at - last)
                streak, last, batch = streak + 1, at, plan_no
