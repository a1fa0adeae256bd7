"""SkyHedge: a home zone plus an anchor elsewhere, rebalancing, the on-demand floor, notices."""

from __future__ import annotations

from typing import Any

import pytest

from policies import registry
from policies.model import LocationEvent, LocationEventKind, LocationState
from policies.reconcile import plan
from policies.skyhedge import (
    Params,
    anchors_for,
    choose_anchor,
    choose_location,
    location_states,
    make_skyhedge,
)
from policies.skyhedge_place import tolerant_zones
from skyctl.lifecycle import EndReason, ReplicaStatus
from skyctl.sim import SimConfig, simulate
from skyctl.spec import ServiceSpec
from skyctl.traces import Trace, ZoneTrace
from tests.test_policies_support import loc, observe, offerings, replica, zones_of
from tests.test_policies_support import make_spec as _make_spec


def make_spec(**kw: Any) -> ServiceSpec:
    """A spec for ``skyhedge`` (no longer the default spot policy) unless another is named."""
    kw.setdefault("policy", "skyhedge")
    return _make_spec(**kw)


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


# three regions: us-west-2 is the cheapest, us-east-1 and eu-west-1 hold the anchors
PRICES3 = {"us-west-2a": 0.9, "us-west-2b": 0.92, "us-east-1a": 0.95, "eu-west-1a": 1.0}
OFFERS3 = {o.location: o for o in offerings(PRICES3) if o.spot}

# (case, eligible zones, ours per zone, home, premium, same region?, expected)
ANCHORS = [
    (
        "the cheapest zone of another region",
        list(PRICES3),
        {},
        "us-west-2a",
        1.1,
        True,
        "us-east-1a",
    ),
    (
        "not a region that already holds an anchor",
        list(PRICES3),
        {"us-west-2a": 2, "us-east-1a": 1},
        "us-west-2a",
        1.1,
        True,
        "eu-west-1a",
    ),
    (
        "a zone that was just lost or refused is not eligible",
        ["us-west-2a", "us-west-2b", "eu-west-1a"],
        {},
        "us-west-2a",
        1.1,
        True,
        "eu-west-1a",
    ),
    (
        "no other region: another zone of the home region",
        ["us-west-2a", "us-west-2b"],
        {},
        "us-west-2a",
        1.1,
        True,
        "us-west-2b",
    ),
    (
        "no other region and no same-region fallback: none",
        ["us-west-2a", "us-west-2b"],
        {},
        "us-west-2a",
        1.1,
        False,
        None,
    ),
    (
        "a zone dearer than the premium allows is skipped",
        ["us-west-2a", "us-west-2b", "eu-west-1a"],
        {},
        "us-west-2a",
        1.05,
        True,
        "us-west-2b",
    ),
    ("only the home zone is eligible: none", ["us-west-2a"], {}, "us-west-2a", 1.1, True, None),
]


@pytest.mark.parametrize(
    "eligible,ours,home,premium,same,want", [c[1:] for c in ANCHORS], ids=[c[0] for c in ANCHORS]
)
def test_choose_anchor(eligible, ours, home, premium, same, want) -> None:  # type: ignore[no-untyped-def]
    got = choose_anchor(
        OFFERS3,
        {loc(z) for z in eligible},
        {loc(z): n for z, n in ours.items()},
        home=loc(home),
        premium=premium,
        same_region=same,
    )
    assert got == (loc(want) if want else None)


@pytest.mark.parametrize(
    "target,every,want",
    [(0, 4, 0), (1, 4, 0), (2, 4, 1), (4, 4, 1), (5, 4, 2), (8, 4, 2), (9, 4, 3), (4, 0, 0)],
)
def test_anchors_for(target: int, every: int, want: int) -> None:
    assert anchors_for(target, every) == want


def test_without_spares_one_anchor_in_another_region_and_the_rest_at_home() -> None:
    p = plan(observe(make_spec(replicas=4), [], offerings(PRICES3)), now=0.0)
    assert sorted(zones_of(p.launches)) == ["us-east-1a"] + ["us-west-2a"] * 3
    assert p.spot_target == 4


def test_a_single_replica_has_no_anchor() -> None:
    p = plan(observe(make_spec(replicas=1), [], offerings(PRICES3)), now=0.0)
    assert zones_of(p.launches) == ["us-west-2a"]


def test_a_spare_joins_the_home_zone_by_default() -> None:
    p = plan(observe(make_spec(replicas=4, overprovision=1), [], offerings(PRICES3)), now=0.0)
    assert sorted(zones_of(p.launches)) == ["us-east-1a"] + ["us-west-2a"] * 4


def test_a_lost_home_promotes_the_anchors_zone_and_a_new_anchor_goes_elsewhere() -> None:
    anchor = replica(1, "us-east-1a")
    lost = [LocationEvent(K.PREEMPTED, loc("us-west-2a"), 50.0)] * 3
    p = plan(observe(make_spec(replicas=4), [anchor], offerings(PRICES3), events=lost), now=60.0)
    assert sorted(zones_of(p.launches)) == ["us-east-1a", "us-east-1a", "us-west-2b"]
    assert len(zones_of(p.launches, spot=False)) == 3  # covers the cold start; the anchor serves


def test_a_replacement_joins_the_surviving_home_zone() -> None:
    reps = [replica(1, "us-east-1a"), replica(2, "us-west-2b"), replica(3, "us-west-2b")]
    p = plan(observe(make_spec(replicas=4), reps, offerings(PRICES3)), now=0.0)
    assert zones_of(p.launches) == ["us-west-2b"]


REBALANCE = [
    ("every replica at home: one new anchor", ["us-west-2a"] * 4, [], ["us-east-1a"], []),
    (
        "the new anchor is starting: nothing is drained yet",
        ["us-west-2a"] * 4 + ["us-east-1a"],
        [5],
        [],
        [],
    ),
    (
        "the new anchor is READY: one home replica drains",
        ["us-west-2a"] * 4 + ["us-east-1a"],
        [],
        [],
        [4],
    ),
]


@pytest.mark.parametrize(
    "zones,starting,launch,drained", [c[1:] for c in REBALANCE], ids=[c[0] for c in REBALANCE]
)
def test_rebalancing_moves_one_replica_to_an_anchor(zones, starting, launch, drained) -> None:  # type: ignore[no-untyped-def]
    reps = [
        replica(i, z, status=R.STARTING if i in starting else R.READY)
        for i, z in enumerate(zones, start=1)
    ]
    p = plan(observe(make_spec(replicas=4), reps, offerings(PRICES3)), now=0.0)
    assert zones_of(p.launches) == launch
    assert sorted(t.replica_id for t in p.terminations) == drained


@pytest.mark.parametrize(
    "refused,floor",
    [
        (["us-west-2b", "us-east-1a", "eu-west-1a"], 1),  # nowhere else has capacity
        (["us-east-1a", "eu-west-1a"], 0),  # us-west-2b is still eligible: a same-region anchor
    ],
    ids=["only the home zone is known good: one on-demand", "another zone is eligible: none"],
)
def test_the_ondemand_floor_covers_a_single_known_zone(refused: list[str], floor: int) -> None:
    reps = [replica(i, "us-west-2a") for i in range(1, 5)]  # serving for two hours
    events = [LocationEvent(K.CAPACITY_ERROR, loc(z), 7200.0) for z in refused]
    p = plan(observe(make_spec(replicas=4), reps, offerings(PRICES3), events=events), now=7200.0)
    assert len(zones_of(p.launches, spot=False)) == floor
    assert p.ondemand_target == floor


# (case, zone and status of each spot replica, on-demand replica?, now, spot launches,
#  on-demand target, time of a preemption of ours or None); READY replicas
#  started serving at 0
YOUNG = [
    (
        "all in a zone that served us for under an hour: one on-demand, an anchor tried",
        [("us-west-2a", R.READY)] * 4,
        False,
        600.0,
        ["us-east-1a"],
        1,
        None,
    ),
    (
        "all in a zone that has served us for over an hour: no floor",
        [("us-west-2a", R.READY)] * 4,
        False,
        7200.0,
        ["us-east-1a"],
        0,
        None,
    ),
    (
        "an anchor only attempted in this plan does not drain the floor",
        [("us-west-2a", R.READY)] * 4,
        True,
        600.0,
        ["us-east-1a"],
        1,
        None,
    ),
    (
        "an anchor the cloud granted (warming up) elsewhere: no floor",
        [("us-west-2a", R.READY)] * 3 + [("us-east-1a", R.STARTING)],
        True,
        600.0,
        [],
        0,
        None,
    ),
    (
        "all in one zone, none serving yet, within an hour of a loss: one on-demand",
        [("us-west-2a", R.STARTING)] * 4,
        False,
        600.0,
        ["us-east-1a"],
        1,
        500.0,
    ),
    (
        "all in one zone, none serving yet, no loss (a cold start): no floor",
        [("us-west-2a", R.STARTING)] * 4,
        False,
        600.0,
        ["us-east-1a"],
        0,
        None,
    ),
]


@pytest.mark.parametrize(
    "spots,od,now,launch,want,lost", [c[1:] for c in YOUNG], ids=[c[0] for c in YOUNG]
)
def test_the_ondemand_floor_covers_a_young_single_zone(  # type: ignore[no-untyped-def]
    spots, od, now, launch, want, lost
) -> None:
    reps = [replica(i, z, status=st) for i, (z, st) in enumerate(spots, start=1)]
    if od:
        reps.append(replica(9, spot=False))
    state = {"skyhedge": {"pre": [lost]}} if lost is not None else None
    obs = observe(make_spec(replicas=4), reps, offerings(PRICES3), policy_state=state)
    p = plan(obs, now=now)
    assert zones_of(p.launches) == launch
    assert p.ondemand_target == want
    assert len(zones_of(p.launches, spot=False)) == max(0, want - od)
    assert [t.replica_id for t in p.terminations] == ([9] if od and not want else [])


# six cheap zones in four regions, and a dear one
PRICES6 = {
    "us-west-2a": 1.0,
    "us-west-2b": 1.0,
    "us-east-1a": 1.05,
    "us-east-2a": 1.1,
    "eu-west-1a": 1.2,
    "eu-west-1b": 1.25,
    "ap-south-1a": 2.0,
}

# (case, spares, zones that just refused, expected zones of the first launches)
TOLERANT = [
    (
        "two spares, six cheap zones known: two per zone, in the cheapest zones",
        2,
        [],
        ["us-east-1a"] * 2 + ["us-west-2a"] * 2 + ["us-west-2b"] * 2,
    ),
    (
        "two spares, five cheap zones known (less than twice the three needed): home + anchor",
        2,
        ["eu-west-1b"],
        ["us-east-1a"] + ["us-west-2a"] * 5,
    ),
    (
        "one spare: home + anchor (five zones would be needed)",
        1,
        [],
        ["us-east-1a"] + ["us-west-2a"] * 4,
    ),
]


@pytest.mark.parametrize(
    "spares,refused,want", [c[1:] for c in TOLERANT], ids=[c[0] for c in TOLERANT]
)
def test_zone_tolerant_spares(spares: int, refused: list[str], want: list[str]) -> None:
    events = [LocationEvent(K.CAPACITY_ERROR, loc(z), 0.0) for z in refused]
    spec = make_spec(replicas=4, overprovision=spares)
    p = plan(observe(spec, [], offerings(PRICES6), events=events), now=0.0)
    assert sorted(zones_of(p.launches)) == sorted(want)


def tolerant_layout(per_zone: dict, count: int, cap: int = 2) -> tuple[dict, list]:
    """``tolerant_zones`` over PRICES6, every zone ACTIVE and eligible."""
    offers = {o.location: o for o in offerings(PRICES6) if o.spot}
    states = {z: A for z in offers}
    got = tolerant_zones(
        offers,
        states,
        per_zone,
        count,
        cap,
        avoid=(),
        eligible=set(offers),
        premium=1.3,
        region_weight=0.3,
    )
    return offers, got


def test_zone_tolerant_layout_survives_any_one_zone_loss() -> None:
    per_zone: dict = {}
    offers, got = tolerant_layout(per_zone, 6)
    assert len(got) == 6
    assert max(per_zone.values()) == 2  # any one zone loss leaves four
    assert all(offers[z].price <= 1.3 for z in per_zone)


def test_zone_tolerant_layout_fills_a_zone_holding_ours_before_a_new_one() -> None:
    _, got = tolerant_layout({loc("eu-west-1b"): 1}, 1)
    assert got == [(loc("eu-west-1b"), "zone-tolerant")]


@pytest.mark.parametrize(
    "weight,want",
    [(0.0, ["us-west-2a", "us-west-2b"]), (0.3, ["us-east-1a", "us-west-2a"])],
    ids=["no region weight: the cheapest zones", "region weight: another region first"],
)
def test_zone_tolerant_region_weight(weight: float, want: list[str]) -> None:
    offers = {o.location: o for o in offerings(PRICES6) if o.spot}
    states = {z: A for z in offers}
    got = tolerant_zones(
        offers, states, {}, 2, 1, avoid=(), eligible=set(offers), premium=1.3, region_weight=weight
    )
    assert sorted(z.zone for z, _ in got) == want


def test_the_floor_drains_once_an_anchor_serves() -> None:
    reps = [replica(i, "us-west-2a") for i in range(1, 4)]
    reps += [replica(4, "us-east-1a"), replica(5, spot=False)]
    p = plan(observe(make_spec(replicas=4), reps, offerings(PRICES3)), now=0.0)
    assert [t.replica_id for t in p.terminations] == [5]


def test_spreading_spares_is_an_option() -> None:
    registry.POLICIES["skyhedge-spread-test"] = make_skyhedge(Params(spread_spares=True))
    try:
        spec = make_spec(replicas=2, overprovision=1, policy="skyhedge-spread-test")
        p = plan(observe(spec, [], offerings(PRICES)), now=0.0)
        assert zones_of(p.launches) == ["us-west-2a", "us-east-1a", "us-east-1c"]
    finally:
        del registry.POLICIES["skyhedge-spread-test"]


def test_ondemand_covers_the_target_not_the_spare() -> None:
    reps = [replica(1, "us-west-2a"), replica(2, "us-east-1a")]  # 2 ready, spare missing
    p = plan(observe(make_spec(replicas=2, overprovision=1), reps, offerings(PRICES)), now=0.0)
    assert zones_of(p.launches, spot=False) == []
    assert zones_of(p.launches) == ["us-west-2a"]  # the spare joins the home zone


# (case, status of the replica in us-west-2a (None: missing), od_pending, on-demand launches)
COVER = [
    ("a granted spot replica warming up is cover enough", R.STARTING, True, 0),
    ("without od_pending only READY spot counts", R.STARTING, False, 1),
    ("a spot replica still pending a grant is not cover", R.PROVISIONING, True, 1),
    ("a missing spot replica is covered while it is replaced", None, True, 1),
    ("a READY spot replica needs no cover", R.READY, True, 0),
]


@pytest.mark.parametrize("status,pending,want", [c[1:] for c in COVER], ids=[c[0] for c in COVER])
def test_ondemand_covers_spot_that_is_neither_ready_nor_granted(
    status: ReplicaStatus | None, pending: bool, want: int
) -> None:
    registry.POLICIES["skyhedge-cover-test"] = make_skyhedge(Params(od_pending=pending))
    try:
        spec = make_spec(replicas=2, policy="skyhedge-cover-test")
        reps = [replica(2, "us-east-1a")]
        if status is not None:
            reps.append(replica(1, "us-west-2a", status=status))
        p = plan(observe(spec, reps, offerings(PRICES)), now=0.0)
        assert len(zones_of(p.launches, spot=False)) == want
    finally:
        del registry.POLICIES["skyhedge-cover-test"]


def test_ondemand_cover_drains_once_the_replacement_is_granted() -> None:
    spec = make_spec(replicas=2)
    reps = [replica(1, "us-west-2a", status=R.STARTING), replica(2, "us-east-1a")]
    reps.append(replica(3, spot=False, status=R.STARTING))
    p = plan(observe(spec, reps, offerings(PRICES)), now=0.0)
    assert [(t.replica_id, t.reason) for t in p.terminations] == [(3, EndReason.SCALED_DOWN)]


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
        zones=tuple(ZoneTrace(z, z[:-1], tuple(c == "1" for c in a), p, None) for z, a, p in zones),
        ondemand_price=5.0,
    )


def test_a_home_zone_loss_is_never_a_total_outage() -> None:
    # t=0: two replicas in us-west-2a (cheapest) and the anchor in us-east-1a,
    # on-demand covering the cold start; 1 h: us-west-2a is lost, the anchor
    # serves on while one replacement starts in its zone (now the home) and the
    # new anchor in us-west-2b; us-west-2a's return at 2 h changes nothing.
    tr = _trace(
        ("us-west-2a", "1011", 1.0), ("us-west-2b", "1111", 1.05), ("us-east-1a", "1111", 1.1)
    )
    r = simulate(make_spec(replicas=3), tr, SimConfig(policy="skyhedge"))
    assert r.preemptions == 2
    assert r.availability_any == 1.0
    assert r.availability == pytest.approx((4 * 3600 - 180 - 180) / (4 * 3600 - 180))
    spot_hours = (2 * 1.0 + 1.1) + 3 * (2 * 1.1 + 1.05)
    assert r.cost == pytest.approx(spot_hours + (3 + 2) * 180 / 3600 * 5.0)
