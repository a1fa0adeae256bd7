"""skyhedge_online is SpotHedge plus spares: with no spares it decides exactly as
SpotHedge, and under capacity caps it is never less available with N ready."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from policies import registry
from policies.model import LocationEvent, LocationEventKind, LocationState, Plan
from policies.reconcile import plan
from policies.skyhedge_online import Params, make
from skyctl.lifecycle import ReplicaStatus
from skyctl.sim import SimConfig, simulate
from skyctl.traces import Trace, ZoneTrace
from tests.test_policies_support import loc, make_spec, observe, offerings, replica, zones_of

R = ReplicaStatus
HOUR = 3600.0
OD = 5.0
PRICES = {"us-east-1a": 1.0, "us-east-1c": 1.2, "us-west-2a": 0.9}


@pytest.fixture
def zero_spares() -> Iterator[str]:
    name = "skyhedge_online@0"
    registry.POLICIES[name] = make(Params(risk_price=0.0))
    yield name
    del registry.POLICIES[name]


# one scripted history, step by step: (replicas, events, now)
SCRIPT = [
    ([], [], 0.0),
    (
        [
            replica(1, "us-west-2a", status=R.PROVISIONING),
            replica(2, "us-east-1a", status=R.STARTING),
        ],
        [LocationEvent(LocationEventKind.LAUNCHED, loc("us-west-2a"), 5.0)],
        10.0,
    ),
    (
        [
            replica(1, "us-west-2a"),
            replica(2, "us-east-1a"),
            replica(3, "us-east-1c", status=R.STARTING),
        ],
        [LocationEvent(LocationEventKind.PREEMPTED, loc("us-east-1a"), 600.0)],
        610.0,
    ),
    (
        [replica(1, "us-west-2a"), replica(3, "us-east-1c", status=R.STARTING)],
        [
            LocationEvent(LocationEventKind.CAPACITY_ERROR, loc("us-east-1c"), 1200.0),
            LocationEvent(LocationEventKind.PREEMPTED, loc("us-west-2a"), 1210.0),
        ],
        1220.0,
    ),
    (
        [replica(4, "us-east-1a"), replica(5, "us-east-1a", status=R.NOT_READY)],
        [LocationEvent(LocationEventKind.LAUNCHED, loc("us-east-1a"), 1800.0)],
        1810.0,
    ),
]


def decisions(p: Plan) -> tuple[object, ...]:
    return (
        sorted((la.offering.location.zone, la.offering.spot) for la in p.launches),
        sorted((t.replica_id, t.reason) for t in p.terminations),
        dict(p.location_states),
        p.spot_target,
        p.ondemand_target,
        p.target,
    )


def test_with_zero_spares_every_decision_is_spothedges(zero_spares: str) -> None:
    peer = make_spec(replicas=3, placer="dynamic_fallback", dynamic=True)
    ours = make_spec(replicas=3, policy=zero_spares)
    states_p: dict = {}
    states_o: dict = {}
    for replicas, events, now in SCRIPT:
        od = [replica(90, "us-east-1a", spot=False)] if now > 1000 else []
        offers = offerings(PRICES)
        a = plan(observe(peer, [*replicas, *od], offers, states=states_p, events=events), now)
        b = plan(observe(ours, [*replicas, *od], offers, states=states_o, events=events), now)
        assert decisions(b) == decisions(a), f"at {now:g} s"
        states_p, states_o = dict(a.location_states), dict(b.location_states)


def capped(*zones: tuple[str, tuple[int, ...], float], gap: float = HOUR) -> Trace:
    """Count-trace zones as (name, per-tick caps, spot price)."""
    return Trace(
        name="caps",
        start=0.0,
        gap_seconds=gap,
        zones=tuple(
            ZoneTrace(z, z[:-2], tuple(c > 0 for c in caps), p, None, caps) for z, caps, p in zones
        ),
        ondemand_price=OD,
    )


# three zones whose caps rise and fall, often below what N=6 wants (the 4-node trace, small)
CAPS = capped(
    ("z-1a", (4, 4, 2, 0, 0, 3, 4, 4, 1, 1, 4, 4, 0, 4, 4, 2) * 3, 1.0),
    ("z-1b", (4, 1, 1, 4, 4, 4, 0, 0, 4, 4, 2, 4, 4, 4, 1, 4) * 3, 1.1),
    ("z-1c", (0, 4, 4, 4, 2, 0, 4, 4, 4, 0, 4, 1, 4, 4, 4, 4) * 3, 1.2),
    gap=600.0,
)


@pytest.mark.parametrize("n", [2, 6, 12])
def test_under_caps_the_default_is_at_least_as_available_as_spothedge(n: int) -> None:
    config = SimConfig(spot_cold_start=60.0, ondemand_cold_start=60.0)
    peer = simulate(make_spec(replicas=n, placer="dynamic_fallback", dynamic=True), CAPS, config)
    # the same spec flag for both: dynamic_ondemand_fallback also lets plan() hold the
    # spot search while on-demand covers (policies.capacity); skyhedge_online always covers
    ours = simulate(make_spec(replicas=n, policy="skyhedge_online", dynamic=True), CAPS, config)
    assert peer.availability < 1.0  # the caps do bite
    assert ours.availability >= peer.availability
    assert ours.availability_any >= peer.availability_any


def test_zero_spares_replays_a_capped_trace_exactly_as_spothedge(zero_spares: str) -> None:
    config = SimConfig(spot_cold_start=60.0, ondemand_cold_start=60.0)
    peer = simulate(make_spec(replicas=6, placer="dynamic_fallback", dynamic=True), CAPS, config)
    ours = simulate(make_spec(replicas=6, policy=zero_spares, dynamic=True), CAPS, config)
    assert (ours.availability, ours.cost, ours.failed_launches) == (
        peer.availability,
        peer.cost,
        peer.failed_launches,
    )


# one zone, lost for one 10-minute tick in every six: every spot replica sits there
FLAKY = capped(("z-1a", (4, 4, 4, 4, 4, 0) * 24, 1.0), gap=600.0)


@pytest.fixture
def with_floor() -> Iterator[str]:
    name = "skyhedge_online@floor"
    registry.POLICIES[name] = make(Params(floor_p=1e-3))
    yield name
    del registry.POLICIES[name]


@pytest.fixture
def without_floor() -> Iterator[str]:
    name = "skyhedge_online@nofloor"
    registry.POLICIES[name] = make(Params(floor_p=None))
    yield name
    del registry.POLICIES[name]


def test_an_on_demand_floor_keeps_one_ready_when_all_spot_can_go_at_once(
    with_floor: str, without_floor: str
) -> None:
    config = SimConfig(spot_cold_start=300.0, ondemand_cold_start=300.0)
    peer = simulate(make_spec(replicas=2, placer="dynamic_fallback", dynamic=True), FLAKY, config)
    bare = simulate(make_spec(replicas=2, policy=without_floor), FLAKY, config)
    ours = simulate(make_spec(replicas=2, policy=with_floor), FLAKY, config)
    # every loss takes every spot replica: SpotHedge, and spares alone, have nothing
    # ready for a cold start each time; the floor's on-demand replica serves through it
    assert peer.availability_any < 0.95 and bare.availability_any < 0.95
    assert ours.availability_any > 0.99
    assert ours.availability >= peer.availability
    assert ours.cost > peer.cost  # the floor is paid for


def test_no_floor_where_spot_is_spread_over_zones_that_fail_apart(with_floor: str) -> None:
    config = SimConfig(spot_cold_start=60.0, ondemand_cold_start=60.0)
    spread = capped(
        ("z-1a", (4,) * 35 + (0,) + (4,) * 36, 1.0),
        ("y-2a", (4,) * 72, 1.1),
        gap=600.0,
    )
    peer = simulate(make_spec(replicas=2, placer="dynamic_fallback", dynamic=True), spread, config)
    ours = simulate(make_spec(replicas=2, policy=with_floor), spread, config)
    assert ours.availability_any == peer.availability_any
    assert ours.availability >= peer.availability
    assert ours.ondemand_hours == pytest.approx(peer.ondemand_hours)  # no floor kept for nothing


def test_with_notices_ignored_and_no_spares_a_noticed_replay_is_spothedges() -> None:
    name = "skyhedge_online@0-notices"
    registry.POLICIES[name] = make(Params(risk_price=0.0, on_notice=False))
    try:
        config = SimConfig(spot_cold_start=60.0, ondemand_cold_start=60.0, notice_seconds=120.0)
        spec = make_spec(replicas=6, placer="dynamic_fallback", dynamic=True)
        peer = simulate(spec, CAPS, config)
        ours = simulate(make_spec(replicas=6, policy=name, dynamic=True), CAPS, config)
        acting = simulate(
            make_spec(replicas=6, policy="skyhedge_online", dynamic=True), CAPS, config
        )
    finally:
        del registry.POLICIES[name]
    assert (ours.availability, ours.cost, ours.failed_launches) == (
        peer.availability,
        peer.cost,
        peer.failed_launches,
    )
    assert acting.cost != peer.cost  # the default does act on notices


def test_a_noticed_zone_is_preempted_from_the_notice_so_the_replacement_never_stacks(
    zero_spares: str,
) -> None:
    # two zones ACTIVE, both in use, the kill in one announced: SpotHedge would mark it
    # PREEMPTED at the preemption, reset every zone (fewer than two ACTIVE) and spread;
    # acting at the notice must do the same, not stack onto the other zone in use
    prices = {"us-east-1a": 1.0, "us-east-1c": 1.1, "us-east-1d": 1.2, "us-east-1f": 1.3}
    PRE, ACT = LocationState.PREEMPTED, LocationState.ACTIVE
    states = {loc("us-east-1d"): PRE, loc("us-east-1f"): PRE}
    noticed = replica(2, "us-east-1c", interruption_at=120.0)
    obs = observe(
        make_spec(replicas=2, policy=zero_spares),
        [replica(1, "us-east-1a"), noticed],
        offerings(prices),
        states=states,
        events=[LocationEvent(LocationEventKind.NOTICE, loc("us-east-1c"), 0.0)],
    )
    p = plan(obs, 0.0)
    assert zones_of(p.launches) == ["us-east-1d"]  # not us-east-1a, where replica 1 runs
    assert set(p.location_states.values()) == {ACT}  # reset, as after the preemption
