"""Every spot launch outcome a replay's plans see, per location, and the capacity
holds they must respect (policies/capacity.py): for the launch-storm tests of
``skyctl sim`` on the shipped and on generated traces."""

from __future__ import annotations

from collections import defaultdict

import pytest

from policies import capacity
from policies.model import LocationEventKind, Plan, ServiceObservation
from skyctl.sim import engine

#: location -> [(plan number, at, outcome)]; a plan sees the previous plan's launches
#: (outcome: True refused, False granted, None a spot replica preempted there)
Seen = dict[str, list[tuple[int, float, bool | None]]]


def watch(monkeypatch: pytest.MonkeyPatch) -> Seen:
    """Start recording the spot launches (granted or refused) and the spot preemptions
    every plan is told of."""
    seen: Seen = defaultdict(list)
    decide = engine.decide
    plans = 0

    def watching(obs: ServiceObservation, now: float) -> Plan:
        nonlocal plans
        plans += 1
        for ev in obs.events:
            if ev.spot and ev.kind in _OUTCOMES:
                seen[str(ev.location)].append((plans, ev.at, _OUTCOMES[ev.kind]))
        return decide(obs, now)

    monkeypatch.setattr(engine, "decide", watching)
    return seen


_OUTCOMES = {
    LocationEventKind.CAPACITY_ERROR: True,
    LocationEventKind.LAUNCHED: False,
    LocationEventKind.PREEMPTED: None,
}


def refused(seen: Seen) -> int:
    return sum(no is True for outcomes in seen.values() for *_, no in outcomes)


def assert_holds_respected(seen: Seen) -> None:
    """No location is asked for spot again before its capacity hold ends (one plan's
    launches into one place are one probe; a preemption there counts as a refusal)."""
    for where, outcomes in seen.items():
        streak, last, batch = 0, 0.0, -1
        for plan_no, at, no in outcomes:
            if no is False:
                streak = 0
            elif plan_no != batch:
                if streak and no:
                    assert at - last >= capacity.hold(streak) - 1e-6, (where, streak, at - last)
                streak, last, batch = streak + 1, at, plan_no
