"""SpotHedge as SkyServe documents and implements it: targets, fallback counts,
location choice, location resets and drains."""

from __future__ import annotations

import pytest

from policies.model import LocationEvent, LocationEventKind, LocationState
from policies.reconcile import plan
from skyctl.lifecycle import EndReason, ReplicaStatus
from tests.test_policies_support import loc, make_spec, observe, offerings, replica, zones_of

R = ReplicaStatus
A, P = LocationState.ACTIVE, LocationState.PREEMPTED
PRICES = {"us-east-1a": 1.0, "us-east-1c": 1.2, "us-west-2a": 0.9}


def hedge(**kw):
    return make_spec(placer="dynamic_fallback", **kw)


# (case, spec kwargs, replicas, spot launches, on-demand launches, terminated ids,
#  spot target, on-demand target)
ARITHMETIC = [
    ("plain: N spot, no fallback", dict(replicas=3), [], 3, 0, [], 3, 0),
    (
        "dynamic: on-demand covers every unready spot",
        dict(replicas=3, dynamic=True),
        [],
        3,
        3,
        [],
        3,
        3,
    ),
    (
        "over-provisioned slots never get on-demand",
        dict(replicas=3, overprovision=1, dynamic=True),
        [],
        4,
        3,
        [],
        4,
        3,
    ),
    (
        "base on-demand is taken out of the spot target",
        dict(replicas=3, base=1),
        [],
        2,
        1,
        [],
        2,
        1,
    ),
    (
        "base plus dynamic, capped at the autoscaler target",
        dict(replicas=3, base=1, dynamic=True),
        [],
        2,
        3,
        [],
        2,
        3,
    ),
    (
        "on-demand drains once spot is ready",
        dict(replicas=2, dynamic=True),
        [replica(1), replica(2, "us-east-1c"), replica(3, spot=False)],
        0,
        0,
        [3],
        2,
        0,
    ),
    (
        "on-demand stays while a spot replica is still starting",
        dict(replicas=2, dynamic=True),
        [replica(1), replica(2, "us-east-1c", status=R.STARTING), replica(3, spot=False)],
        0,
        0,
        [],
        2,
        1,
    ),
    (
        "ours: a preemption the spare covers gets a spot replacement, no on-demand",
        dict(replicas=2, overprovision=1, dynamic=True),
        [replica(1), replica(2, "us-east-1c")],
        1,
        0,
        [],
        3,
        0,
    ),
    (
        "a preemption beyond the spare gets spot and on-demand replacements",
        dict(replicas=2, overprovision=1, dynamic=True),
        [replica(1)],
        2,
        1,
        [],
        3,
        1,
    ),
    (
        "on-demand drains once ready spot covers the target (spare or not)",
        dict(replicas=2, overprovision=1, dynamic=True),
        [replica(1), replica(2, "us-east-1c"), replica(3, spot=False)],
        1,
        0,
        [3],
        3,
        0,
    ),
    (
        "spot surplus drains the newest ready replica",
        dict(replicas=2),
        [replica(1), replica(2, "us-east-1c"), replica(3, "us-west-2a")],
        0,
        0,
        [3],
        2,
        0,
    ),
    (
        "spot surplus drains a starting replica before a ready one",
        dict(replicas=1),
        [replica(1), replica(2, "us-east-1c", status=R.STARTING)],
        0,
        0,
        [2],
        1,
        0,
    ),
    (
        "shutting-down replicas are not counted",
        dict(replicas=2),
        [replica(1), replica(2, "us-east-1c", status=R.SHUTTING_DOWN)],
        1,
        0,
        [],
        2,
        0,
    ),
]


@pytest.mark.parametrize(
    "kw,replicas,spot_n,od_n,terminated,spot_target,od_target",
    [c[1:] for c in ARITHMETIC],
    ids=[c[0] for c in ARITHMETIC],
)
def test_spothedge_arithmetic(kw, replicas, spot_n, od_n, terminated, spot_target, od_target):
    p = plan(observe(hedge(**kw), replicas, offerings(PRICES)), now=100.0)
    assert len(zones_of(p.launches, spot=True)) == spot_n
    assert len(zones_of(p.launches, spot=False)) == od_n
    assert sorted(t.replica_id for t in p.terminations) == terminated
    assert all(t.reason is EndReason.SCALED_DOWN for t in p.terminations)
    assert (p.spot_target, p.ondemand_target) == (spot_target, od_target)


def test_target_includes_overprovision() -> None:
    p = plan(observe(hedge(replicas=3, overprovision=2), [], offerings(PRICES)), now=0.0)
    assert p.target == 5


# (case, states, existing spot zones, launches, expected zones in order)
CHOICES = [
    ("distinct locations, cheapest first", {}, [], 3, ["us-west-2a", "us-east-1a", "us-east-1c"]),
    (
        "all used: the cheapest active again",
        {},
        [],
        4,
        ["us-west-2a", "us-east-1a", "us-east-1c", "us-west-2a"],
    ),
    ("a location already hosting a replica is skipped", {}, ["us-west-2a"], 1, ["us-east-1a"]),
    (
        "preempted locations are not chosen",
        {"us-west-2a": P},
        [],
        3,
        ["us-east-1a", "us-east-1c", "us-east-1a"],
    ),
]


@pytest.mark.parametrize(
    "states,existing,n,expected", [c[1:] for c in CHOICES], ids=[c[0] for c in CHOICES]
)
def test_spothedge_location_choice(states, existing, n, expected) -> None:  # type: ignore[no-untyped-def]
    present = [replica(i + 1, z) for i, z in enumerate(existing)]
    spec = hedge(replicas=len(existing) + n)
    obs = observe(spec, present, offerings(PRICES), states={loc(z): s for z, s in states.items()})
    assert zones_of(plan(obs, now=0.0).launches) == expected


def ev(kind: LocationEventKind, zone: str, at: float = 1.0, spot: bool = True) -> LocationEvent:
    return LocationEvent(kind, loc(zone), at, spot)


K = LocationEventKind
# (case, previous states, events, expected states)
RESETS = [
    ("preemption marks PREEMPTED", {}, [ev(K.PREEMPTED, "us-west-2a")], {"us-west-2a": P}),
    ("capacity error marks PREEMPTED", {}, [ev(K.CAPACITY_ERROR, "us-east-1a")], {"us-east-1a": P}),
    (
        "fewer than two active: all reset",
        {"us-west-2a": P},
        [ev(K.PREEMPTED, "us-east-1a")],
        {},
    ),
    ("successful launch marks ACTIVE", {"us-west-2a": P}, [ev(K.LAUNCHED, "us-west-2a")], {}),
    ("notices are ignored", {}, [ev(K.NOTICE, "us-west-2a")], {}),
    ("on-demand events are ignored", {}, [ev(K.CAPACITY_ERROR, "us-west-2a", spot=False)], {}),
    (
        "events apply oldest first",
        {},
        [ev(K.PREEMPTED, "us-east-1c", 1.0), ev(K.LAUNCHED, "us-east-1c", 2.0)],
        {},
    ),
]


@pytest.mark.parametrize(
    "previous,events,expected", [c[1:] for c in RESETS], ids=[c[0] for c in RESETS]
)
def test_spothedge_location_states(previous, events, expected) -> None:  # type: ignore[no-untyped-def]
    obs = observe(
        hedge(replicas=0),
        [],
        offerings(PRICES),
        states={loc(z): s for z, s in previous.items()},
        events=events,
    )
    got = plan(obs, now=5.0).location_states
    want = {loc(z): expected.get(z, A) for z in PRICES}
    assert dict(got) == want


def test_preempted_location_is_avoided_in_the_same_plan() -> None:
    obs = observe(
        hedge(replicas=2),
        [replica(1, "us-east-1a")],
        offerings(PRICES),
        events=[ev(K.PREEMPTED, "us-west-2a")],
    )
    assert zones_of(plan(obs, now=5.0).launches) == ["us-east-1c"]


def test_spothedge_ignores_interruption_notices_when_counting() -> None:
    doomed = replica(1, "us-west-2a", interruption_at=50.0)
    obs = observe(hedge(replicas=1, dynamic=True), [doomed], offerings(PRICES))
    assert plan(obs, now=10.0).launches == ()
