"""SkyHedge: a home zone without spares, spreading with spares, notices, on-demand cover."""

from __future__ import annotations

import pytest

from policies import registry
from policies.model import LocationEvent, LocationEventKind, LocationState
from policies.reconcile import plan
from policies.skyhedge import Params, choose_location, location_states, make_skyhedge
from skyctl.lifecycle import EndReason, ReplicaStatus
from skyctl.sim import SimConfig, simulate
from skyctl.traces import Trace, ZoneTrace
from tests.test_policies_support import loc, make_spec, observe, offerings, replica, zones_of

R = ReplicaStatus
K = LocationEventKind
A, P = LocationState.ACTIVE, LocationState.PREEMPTED
PRICES = {"us-east-1a": 1.0, "us-east-1c": 1.2, "us-west-2a": 0.9}
OFFERS = {o.location: o for o in offerings(PRICES) if o.spot}
ALL_ACTIVE = {z: A for z in PRICES}

# (case, zone states, ours per zone, spread?, avoid, expected)
CHOICES = [
    ("home: the cheapest ACTIVE zone when we have none", {}, {}, False, [], "us-west-2a"),
    ("home: stays where most of ours are", {}, {"us-east-1c": 2}, False, [], "us-east-1c"),
    (
        "home: leaves a PREEMPTED home",
        {"us-east-1c": P},
        {"us-east-1c": 2},
        False,
        [],
        "us-west-2a",
    ),
    ("spread: the cheapest free zone", {}, {}, True, [], "us-west-2a"),
    ("spread: another zone while prices are close", {}, {"us-west-2a": 1}, True, [], "us-east-1a"),
    ("spread: skips a PREEMPTED zone", {"us-west-2a": P}, {}, True, [], "us-east-1a"),
    ("a zone that just refused comes last", {}, {}, False, ["us-west-2a"], "us-east-1a"),
    ("nothing ACTIVE: the same rule over all", {z: P for z in PRICES}, {}, False, [], "us-west-2a"),
]


@pytest.mark.parametrize(
    "states,ours,spread,avoid,want", [c[1:] for c in CHOICES], ids=[c[0] for c in CHOICES]
)
def test_choose_location(states, ours, spread, avoid, want) -> None:  # type: ignore[no-untyped-def]
    got = choose_location(
        OFFERS,
        {loc(z): s for z, s in {**ALL_ACTIVE, **states}.items()},
        {loc(z): n for z, n in ours.items()},
        spread=spread,
        avoid={loc(z) for z in avoid},
    )
    assert got == loc(want)


def test_spreading_stacks_in_a_cheap_zone_rather_than_pay_a_dear_one() -> None:
    offers = {
        o.location: o for o in offerings({"us-east-4a": 15.0, "asia-south-2b": 70.0}) if o.spot
    }
    states = {loc_: A for loc_ in offers}
    got = choose_location(offers, states, {loc("us-east-4a"): 1}, spread=True)
    assert got == loc("us-east-4a")  # 15 x (1 + 2) = 45 < 70


def test_choose_location_without_offers_is_none() -> None:
    assert choose_location({}, {}, {}, spread=False) is None


def test_a_notice_counts_as_a_preemption_of_its_zone() -> None:
    ev = LocationEvent(K.NOTICE, loc("us-west-2a"), 5.0)
    states = location_states({}, list(OFFERS), [ev])
    assert states[loc("us-west-2a")] is P
    assert states[loc("us-east-1a")] is A


def test_without_spares_every_replica_goes_to_one_home_zone() -> None:
    p = plan(observe(make_spec(replicas=3), [], offerings(PRICES)), now=0.0)
    assert zones_of(p.launches) == ["us-west-2a"] * 3
    assert p.spot_target == 3


def test_a_replacement_joins_the_surviving_home_zone() -> None:
    reps = [replica(1, "us-east-1c"), replica(2, "us-east-1c")]
    p = plan(observe(make_spec(replicas=3), reps, offerings(PRICES)), now=0.0)
    assert zones_of(p.launches) == ["us-east-1c"]


def test_with_a_spare_and_enough_zones_replicas_spread() -> None:
    p = plan(observe(make_spec(replicas=2, overprovision=1), [], offerings(PRICES)), now=0.0)
    assert zones_of(p.launches) == ["us-west-2a", "us-east-1a", "us-east-1c"]
    assert p.spot_target == 3


def test_with_a_spare_but_too_few_usable_zones_it_concentrates() -> None:
    spec = make_spec(replicas=2, overprovision=1)
    states = {loc("us-east-1a"): P}  # two usable zones for three replicas
    p = plan(observe(spec, [], offerings(PRICES), states=states), now=0.0)
    assert zones_of(p.launches) == ["us-west-2a"] * 3


def test_ondemand_covers_the_target_not_the_spare() -> None:
    reps = [replica(1, "us-west-2a"), replica(2, "us-east-1a")]  # 2 ready, spare missing
    p = plan(observe(make_spec(replicas=2, overprovision=1), reps, offerings(PRICES)), now=0.0)
    assert zones_of(p.launches, spot=False) == []
    assert zones_of(p.launches) == ["us-east-1c"]


def test_ondemand_fills_missing_ready_spot_and_drains_once_spot_is_ready() -> None:
    spec = make_spec(replicas=2)
    starting = [replica(1, "us-west-2a", status=R.STARTING), replica(2, "us-west-2a")]
    p = plan(observe(spec, starting, offerings(PRICES)), now=0.0)
    assert len(zones_of(p.launches, spot=False)) == 1
    ready = [replica(1, "us-west-2a"), replica(2, "us-west-2a"), replica(3, spot=False)]
    p = plan(observe(spec, ready, offerings(PRICES)), now=0.0)
    assert [(t.replica_id, t.reason) for t in p.terminations] == [(3, EndReason.SCALED_DOWN)]


def test_a_preemption_moves_the_home_zone() -> None:
    ev = LocationEvent(K.PREEMPTED, loc("us-west-2a"), 50.0)
    p = plan(observe(make_spec(replicas=2), [], offerings(PRICES), events=[ev]), now=60.0)
    assert p.location_states[loc("us-west-2a")] is P
    assert zones_of(p.launches) == ["us-east-1a", "us-east-1a"]


def test_a_refused_zone_is_not_retried_at_the_same_instant_after_a_reset() -> None:
    # Two zones refuse in turn; SpotHedge's reset makes both ACTIVE again, but
    # the plan at the same instant goes to the third zone.
    spec = make_spec(replicas=1)
    first = LocationEvent(K.CAPACITY_ERROR, loc("us-west-2a"), 0.0)
    p1 = plan(observe(spec, [], offerings(PRICES), events=[first]), now=0.0)
    second = LocationEvent(K.CAPACITY_ERROR, loc("us-east-1a"), 0.0)
    obs = observe(
        spec,
        [],
        offerings(PRICES),
        states=p1.location_states,
        events=[second],
        policy_state=p1.policy_state,
    )
    p2 = plan(obs, now=0.0)
    assert set(p2.location_states.values()) == {A}  # the reset happened
    assert zones_of(p2.launches) == ["us-east-1c"]


def test_a_notice_launches_the_replacement_elsewhere_before_the_kill() -> None:
    doomed = replica(1, "us-west-2a", interruption_at=120.0)
    spec = make_spec(replicas=1)
    ev = LocationEvent(K.NOTICE, loc("us-west-2a"), 0.0)
    p = plan(observe(spec, [doomed], offerings(PRICES), events=[ev]), now=0.0)
    assert zones_of(p.launches) == ["us-east-1a"]
    assert len(zones_of(p.launches, spot=False)) == 1  # covers until the new spot is READY
    assert p.terminations == ()  # the doomed replica serves until the kill


def test_volatility_adds_a_spare_only_when_spares_are_in_use() -> None:
    registry.POLICIES["skyhedge-volatile-test"] = make_skyhedge(Params(volatile_preemptions=1))
    try:
        ev = LocationEvent(K.PREEMPTED, loc("us-east-1c"), 10.0)
        targets = []
        for over in (0, 1):
            spec = make_spec(replicas=1, overprovision=over, policy="skyhedge-volatile-test")
            calm = plan(observe(spec, [], offerings(PRICES)), now=20.0)
            rough = plan(observe(spec, [], offerings(PRICES), events=[ev]), now=20.0)
            targets.append((calm.spot_target, rough.spot_target))
        assert targets == [(1, 1), (2, 3)]
    finally:
        del registry.POLICIES["skyhedge-volatile-test"]


def _trace(*zones: tuple[str, str, float]) -> Trace:
    return Trace(
        name="hand",
        start=0.0,
        gap_seconds=3600.0,
        zones=tuple(ZoneTrace(z, z[:-2], tuple(c == "1" for c in a), p, None) for z, a, p in zones),
        ondemand_price=5.0,
    )


def test_the_home_zone_moves_on_a_loss_and_stays_when_the_old_one_returns() -> None:
    # t=0: both replicas in 1a (cheapest) with on-demand cover until READY;
    # 1 h: 1a is lost, both move to 1b (on-demand covers the cold start);
    # 2 h: 1a is back and cheaper, but the replicas stay in 1b, which has lasted.
    tr = _trace(("z-1a", "1011", 1.0), ("z-1b", "1111", 2.0))
    r = simulate(make_spec(replicas=2), tr, SimConfig(policy="skyhedge"))
    assert r.preemptions == 2
    assert r.launches == 8  # 2 spot + 2 on-demand, twice
    assert r.cost == pytest.approx(2 * 1.0 + 2 * 3 * 2.0 + 2 * (2 * 180 / 3600 * 5.0))
    assert r.availability == pytest.approx((4 * 3600 - 180 - 180) / (4 * 3600 - 180))
