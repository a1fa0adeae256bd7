"""SkyHedge: cooldowns, price-aware spreading, spares, on-demand cover, notices."""

from __future__ import annotations

import pytest

from policies.model import LocationEvent, LocationEventKind, LocationState
from policies.reconcile import plan
from policies.skyhedge import Params, choose_location, location_key
from skyctl.lifecycle import EndReason, ReplicaStatus
from tests.test_policies_support import loc, make_spec, observe, offerings, replica, zones_of

R = ReplicaStatus
K = LocationEventKind
PRICES = {"us-east-1a": 1.0, "us-east-1c": 1.2, "us-west-2a": 0.9}
OFFERS = {o.location: o for o in offerings(PRICES) if o.spot}


# (case, last bad event per zone, zones in use, now, expected)
CHOICES = [
    ("cheapest free zone", {}, [], 0.0, "us-west-2a"),
    ("spreads while prices are close", {}, ["us-west-2a"], 0.0, "us-east-1a"),
    ("skips a zone cooling down", {"us-west-2a": 100.0}, [], 200.0, "us-east-1a"),
    ("a zone is usable again after the cooldown", {"us-west-2a": 100.0}, [], 1900.0, "us-west-2a"),
    (
        "all cooling: the cheapest anyway",
        {z: 100.0 for z in PRICES},
        [],
        200.0,
        "us-west-2a",
    ),
]


@pytest.mark.parametrize(
    "bad,in_use,now,want", [c[1:] for c in CHOICES], ids=[c[0] for c in CHOICES]
)
def test_choose_location(bad, in_use, now, want) -> None:  # type: ignore[no-untyped-def]
    last_bad = {location_key(loc(z)): t for z, t in bad.items()}
    got = choose_location(OFFERS, last_bad, [loc(z) for z in in_use], now, Params())
    assert got == loc(want)


def test_stacks_in_a_cheap_zone_rather_than_pay_a_dear_one() -> None:
    offers = {
        o.location: o for o in offerings({"us-east-4a": 15.0, "asia-south-2b": 70.0}) if o.spot
    }
    got = choose_location(offers, {}, [loc("us-east-4a")], 0.0, Params())
    assert got == loc("us-east-4a")  # 15 x (1 + 2) = 45 < 70


def test_keeps_one_spare_spot_replica_by_default() -> None:
    p = plan(observe(make_spec(replicas=2), [], offerings(PRICES)), now=0.0)
    assert zones_of(p.launches) == ["us-west-2a", "us-east-1a", "us-east-1c"]
    assert p.spot_target == 3


def test_num_overprovision_from_the_spec_replaces_the_default_spare() -> None:
    p = plan(observe(make_spec(replicas=2, overprovision=0), [], offerings(PRICES)), now=0.0)
    assert p.spot_target == 2


def test_ondemand_covers_the_target_not_the_spare() -> None:
    reps = [replica(1, "us-west-2a"), replica(2, "us-east-1a")]  # 2 ready, spare missing
    p = plan(observe(make_spec(replicas=2), reps, offerings(PRICES)), now=0.0)
    assert zones_of(p.launches, spot=False) == []
    assert zones_of(p.launches) == ["us-east-1c"]


def test_ondemand_fills_missing_ready_spot_and_drains_once_spot_is_ready() -> None:
    spec = make_spec(replicas=2)
    starting = [replica(1, "us-west-2a", status=R.STARTING), replica(2, "us-east-1a")]
    p = plan(observe(spec, starting, offerings(PRICES)), now=0.0)
    assert len(zones_of(p.launches, spot=False)) == 1
    ready = [replica(1, "us-west-2a"), replica(2, "us-east-1a"), replica(3, spot=False)]
    p = plan(observe(spec, ready, offerings(PRICES)), now=0.0)
    assert [(t.replica_id, t.reason) for t in p.terminations] == [(3, EndReason.SCALED_DOWN)]


def test_a_preemption_starts_a_cooldown_visible_as_preempted() -> None:
    ev = LocationEvent(K.PREEMPTED, loc("us-west-2a"), 50.0)
    p = plan(observe(make_spec(replicas=1), [], offerings(PRICES), events=[ev]), now=60.0)
    assert p.location_states[loc("us-west-2a")] is LocationState.PREEMPTED
    assert "us-west-2a" not in zones_of(p.launches)
    later = plan(
        observe(make_spec(replicas=1), [], offerings(PRICES), policy_state=p.policy_state),
        now=50.0 + 1800.0,
    )
    assert later.location_states[loc("us-west-2a")] is LocationState.ACTIVE


def test_a_notice_launches_the_replacement_before_the_kill() -> None:
    doomed = replica(1, "us-west-2a", interruption_at=120.0)
    spec = make_spec(replicas=1, overprovision=0)
    ev = LocationEvent(K.NOTICE, loc("us-west-2a"), 0.0)
    p = plan(observe(spec, [doomed], offerings(PRICES), events=[ev]), now=0.0)
    assert zones_of(p.launches) == ["us-east-1a"]
    assert len(zones_of(p.launches, spot=False)) == 1  # covers until the new spot is READY
    assert p.terminations == ()  # the doomed replica serves until the kill


def test_volatility_adds_a_spare() -> None:
    from policies import registry
    from policies.skyhedge import make_skyhedge

    registry.POLICIES["skyhedge-volatile-test"] = make_skyhedge(Params(volatile_preemptions=1))
    try:
        spec = make_spec(replicas=1, policy="skyhedge-volatile-test")
        ev = LocationEvent(K.PREEMPTED, loc("us-east-1c"), 10.0)
        calm = plan(observe(spec, [], offerings(PRICES)), now=20.0)
        rough = plan(observe(spec, [], offerings(PRICES), events=[ev]), now=20.0)
        assert (calm.spot_target, rough.spot_target) == (2, 3)
    finally:
        del registry.POLICIES["skyhedge-volatile-test"]
