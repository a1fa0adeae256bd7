"""policies.estimators and skyhedge_online's sizing rule, on hand-made traces with known answers."""

from __future__ import annotations

import math
from typing import Any

import pytest

from policies import estimators
from policies.estimators import Risk
from policies.model import LocationEvent, LocationEventKind, ServiceObservation
from policies.skyhedge_online import spares_for
from skyctl.sim import SimConfig
from skyctl.sim.engine import Simulation
from skyctl.traces import Trace, ZoneTrace
from skyctl.types import Location
from tests.test_policies_support import make_spec

HOUR = 3600.0


def pattern(up: int, down: int, periods: int) -> tuple[bool, ...]:
    return ((True,) * up + (False,) * down) * periods


def replay(
    zones: dict[str, tuple[bool, ...]], *, replicas: int = 1, **config: Any
) -> dict[str, Any]:
    """The estimates skyhedge_online holds at the end of a replay (1 h ticks)."""
    trace = Trace(
        "hand",
        0.0,
        HOUR,
        tuple(ZoneTrace(z, z[:-1], a, 1.0, 4.0) for z, a in zones.items()),
        4.0,
    )
    sim = Simulation(
        make_spec(replicas=replicas, policy="skyhedge_online"), trace, SimConfig(**config)
    )
    sim.run()
    return dict(sim.policy_state["skyhedge_online"]["est"])


def loc(zone: str) -> Location:
    return Location("trace", zone[:-1], zone)


def test_loss_rate_outage_length_and_cold_start_from_a_regular_zone() -> None:
    # one zone: 9 h up, 1 h down, 60 times; one replica held through every up spell
    est = replay({"r-1a": pattern(9, 1, 60)})
    z = est["z"]["trace/r-1/r-1a"]
    exposure, losses = z[0], z[1]
    assert losses == 60
    assert exposure == pytest.approx(60 * 9, rel=0.02)
    risk = estimators.risks(est, [loc("r-1a")], 600 * HOUR)[loc("r-1a")]
    assert risk.loss_rate == pytest.approx(1 / 9, rel=0.05)
    assert risk.outage_h == pytest.approx(1.0, rel=0.05)  # lost at a tick, back the next
    assert estimators.cold_start_s(est) == pytest.approx(180.0)


def test_cold_start_estimate_follows_a_distribution() -> None:
    est = replay(
        {"r-1a": pattern(9, 1, 60)},
        spot_cold_start="uniform:100:500",
        ondemand_cold_start="uniform:100:500",
        seed=1,
    )
    assert estimators.cold_start_s(est) == pytest.approx(300.0, rel=0.12)


def test_notice_lead_is_measured_and_a_noticed_loss_counts_once() -> None:
    est = replay({"r-1a": pattern(9, 1, 60)}, notice_seconds=120.0)
    assert est["z"]["trace/r-1/r-1a"][1] == 60
    assert estimators.notice_lead_s(est) == pytest.approx(120.0 * 60 / 61)  # prior: one unnoticed


def test_refusals_raise_the_refusal_probability() -> None:
    # the zone is out every other hour; a launch there at an out hour is refused
    est = replay({"r-1a": pattern(1, 1, 100)})
    z = est["z"]["trace/r-1/r-1a"]
    assert z[3] > 0 and z[2] > z[3]  # attempts > refusals > 0
    risk = estimators.risks(est, [loc("r-1a")], 1000 * HOUR)[loc("r-1a")]
    assert risk.refusal == pytest.approx((z[3] + 1) / (z[2] + estimators.PRIOR_ATTEMPTS))


def test_zones_failing_together_give_their_region_a_joint_rate() -> None:
    together = pattern(9, 1, 40)
    est = replay({"r-1a": together, "r-1b": together}, replicas=2)
    assert est["r"]["trace/r-1"][1] == 40  # every loss hit both zones at once
    risk = estimators.risks(est, [loc("r-1a")], 400 * HOUR)[loc("r-1a")]
    assert risk.joint_rate == pytest.approx(1 / 9, rel=0.1)
    apart = replay(
        {"r-1a": pattern(9, 1, 40), "r-1b": (True,) * 5 + pattern(9, 1, 40)[:-5]}, replicas=2
    )
    assert apart["r"].get("trace/r-1", [0, 0])[1] == 0


def test_an_unseen_zone_gets_its_region_rate_then_the_global_prior() -> None:
    est = replay({"r-1a": pattern(9, 1, 60)})
    seen, sibling, elsewhere = loc("r-1a"), loc("r-1b"), loc("q-2a")
    risks = estimators.risks(est, [seen, sibling, elsewhere], 600 * HOUR)
    assert risks[sibling].loss_rate == pytest.approx(risks[seen].loss_rate, rel=0.05)
    g = (60 + estimators.PRIOR_GLOBAL_EVENTS) / (est["z"]["trace/r-1/r-1a"][0] + 12.0)
    assert risks[elsewhere].loss_rate == pytest.approx(g)


def test_update_does_not_change_the_previous_state() -> None:
    a = Location("c", "r", "r-a")
    obs = ServiceObservation(
        service="s",
        version=1,
        spec=make_spec(replicas=1),
        replicas=(),
        offerings=(),
        location_states={},
        events=(LocationEvent(LocationEventKind.CAPACITY_ERROR, a, 10.0),),
    )
    first = estimators.update(None, obs, 10.0)
    snapshot = repr(first)
    estimators.update(first, obs, 20.0)
    assert repr(first) == snapshot


# ---------------------------------------------------------------- the sizing rule


def risk(rate: float, joint: float = 0.0) -> Risk:
    return Risk(loss_rate=rate, joint_rate=joint, refusal=0.0, outage_h=1.0)


def test_a_spare_is_kept_when_the_unavailability_it_saves_costs_more_than_it() -> None:
    zones = [Location("c", "r", f"r-{x}") for x in "abcd"]
    risks = {z: risk(0.1) for z in zones}
    # four zones with one replica each: a loss event every 2.5 h takes one replica
    assert spares_for(zones, risks, unit_cost=10.0, spare_price=3.0, cap=4) == 1  # 10 x 0.4 > 3
    assert spares_for(zones, risks, unit_cost=10.0, spare_price=5.0, cap=4) == 0  # 4 < 5
    # two replicas in one zone: the second spare pays only for that zone's losses
    doubled = [*zones, zones[0]]
    assert spares_for(doubled, risks, unit_cost=40.0, spare_price=3.0, cap=4) == 2  # 4 > 3
    assert spares_for(doubled, risks, unit_cost=20.0, spare_price=3.0, cap=4) == 1  # 2 < 3
    assert spares_for(zones, risks, unit_cost=1e9, spare_price=1.0, cap=4) == 1  # one per zone
    assert spares_for(doubled, risks, unit_cost=1e9, spare_price=1.0, cap=1) == 1  # capped


def test_joint_losses_size_spares_for_a_whole_region() -> None:
    zones = [Location("c", "r", "r-a"), Location("c", "r", "r-b")]
    risks = {z: risk(0.0, joint=0.5) for z in zones}
    # nothing fails alone, but the region takes both replicas at once
    assert spares_for(zones, risks, unit_cost=10.0, spare_price=1.0, cap=4) == 2


def test_the_probability_of_losing_every_spot_replica_within_a_window() -> None:
    # two zones of different regions, each 9 h up / 1 h down, never together
    est = replay({"r-1a": pattern(9, 1, 40), "q-2a": (True,) * 5 + pattern(9, 1, 40)[:-5]})
    a, b = loc("r-1a"), loc("q-2a")
    rates = estimators.risks(est, [a, b], 400 * HOUR)
    one = 1 - math.exp(-rates[a].loss_rate * 0.5)
    assert 0.05 < rates[a].loss_rate < 0.5 and 0.05 < rates[b].loss_rate < 0.5
    assert estimators.p_all_lost(est, [a], 0.5, 400 * HOUR) == pytest.approx(one)
    assert estimators.p_all_lost(est, [a, a], 0.5, 400 * HOUR) == pytest.approx(one)
    # two regions: both must go within the window (independent)
    both = estimators.p_all_lost(est, [a, b], 0.5, 400 * HOUR)
    assert both == pytest.approx(one * (1 - math.exp(-rates[b].loss_rate * 0.5)))
    assert estimators.p_all_lost(est, [], 0.5, 0.0) == 0.0
    assert estimators.p_all_lost(est, [a], 0.0, 0.0) == 0.0


def test_zones_failing_together_are_lost_together() -> None:
    together = pattern(9, 1, 40)
    est = replay({"r-1a": together, "r-1b": together}, replicas=2)
    a, b = loc("r-1a"), loc("r-1b")
    p = estimators.p_all_lost(est, [a, b], 0.5, 400 * HOUR)
    # the joint rate alone (1/9 per hour) gives about 1 - exp(-0.5 / 9)
    assert p == pytest.approx(1 - math.exp(-0.5 / 9), rel=0.15)
    apart = replay(
        {"r-1a": pattern(9, 1, 40), "r-1b": (True,) * 5 + pattern(9, 1, 40)[:-5]}, replicas=2
    )
    assert estimators.p_all_lost(apart, [a, b], 0.5, 400 * HOUR) < p / 5
