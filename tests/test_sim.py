"""The simulator's figures on small hand-made traces whose answers are known exactly."""

from __future__ import annotations

import json

import pytest

from skyctl.sim import SimConfig, format_table, lower_bound, simulate, to_json
from skyctl.traces import Trace, ZoneTrace
from tests.test_policies_support import make_spec

HOUR = 3600.0
OD = 5.0


def trace(*zones: tuple[str, str, float]) -> Trace:
    """Zones as (name, availability string like "1.1", spot price); one tick = 1 h."""
    return Trace(
        name="hand",
        start=0.0,
        gap_seconds=HOUR,
        zones=tuple(ZoneTrace(z, z[:-2], tuple(c == "1" for c in a), p, None) for z, a, p in zones),
        ondemand_price=OD,
    )


def test_ondemand_only_costs_n_ondemand_replicas_for_the_window() -> None:
    r = simulate(make_spec(replicas=1, use_spot=False), trace(("z-1a", "11", 1.0)))
    assert r.cost == pytest.approx(2 * OD)
    assert r.ondemand_cost == pytest.approx(2 * OD)
    assert r.cost_share == pytest.approx(1.0)
    assert r.lower_bound == pytest.approx(2.0)
    assert r.cost_over_bound == pytest.approx(OD)
    assert (r.availability, r.availability_any) == (1.0, 1.0)
    assert (r.launches, r.failed_launches, r.preemptions) == (1, 0, 0)
    assert r.ondemand_hours == pytest.approx(2.0)


def test_cheapest_spot_loses_its_replica_while_the_zone_is_out() -> None:
    r = simulate(
        make_spec(replicas=1, policy="cheapest_spot"),
        trace(("z-1a", "101", 1.0)),
        SimConfig(spot_cold_start=180.0),
    )
    # refused at 3600 s, then probed as the capacity hold grows (policies.capacity):
    # 3630, 3690, 3810, 4050, 4530, 5490 s refused, 7410 s granted (the zone is back at
    # 7200 s; the seventh hold is 1,920 s): ready [180, 3600) and [7590, 10800);
    # measured from 180 s
    assert r.availability == pytest.approx((3420 + 3210) / (10800 - 180))
    assert r.cost == pytest.approx(1.0 + (10800 - 7410) / HOUR)  # spot at $1
    assert r.preemptions == 1
    assert r.failed_launches == 7
    assert r.launches == 9
    assert r.lower_bound == pytest.approx(1.0 + OD + 1.0)  # on-demand where none is available
    assert r.ondemand_hours == 0.0


def test_spothedge_falls_back_to_ondemand_and_drains_it() -> None:
    spec = make_spec(replicas=1, placer="dynamic_fallback", dynamic=True)
    r = simulate(spec, trace(("z-1a", "10", 1.0), ("z-1b", "00", 2.0), ("z-1c", "11", 3.0)))
    # t=0: spot in 1a + on-demand cover; at 180 s spot is READY and the on-demand drains.
    # t=3600: 1a preempted; 1b fails, the reset makes 1a ACTIVE again, 1a fails; both
    # are on hold for 30 s, and two refusals in a row hold the whole spot search for
    # 15 s (policies.capacity), so SpotHedge takes 1c at 3615 s; the on-demand cover
    # serves from 3780 s, until 1c is READY at 3795 s, and drains.
    assert r.preemptions == 1
    assert r.failed_launches == 2
    assert r.ondemand_hours == pytest.approx((180 + 195) / HOUR)
    assert r.cost == pytest.approx(1.0 + 3.0 * 3585 / HOUR + OD * (180 + 195) / HOUR)
    assert r.availability == pytest.approx((7200 - 180 - 180) / (7200 - 180))


def test_skyhedge_keeps_a_spare_and_avoids_the_failed_zone() -> None:
    r = simulate(
        make_spec(replicas=1, overprovision=1, policy="skyhedge"),
        trace(("z-1a", "10", 1.0), ("z-1b", "00", 2.0), ("z-1c", "11", 2.5)),
    )
    # t=0: 1a, 1b fails, 1c as the spare; the on-demand cover launched with them
    # drains at once, at the same-instant re-plan that sees 1a granted (STARTING).
    # t=3600: 1a preempted; 1b (cooled down) fails; a second replica in 1c,
    # and, with 1c the only zone known to have capacity, an on-demand floor.
    assert r.availability == 1.0
    assert r.failed_launches == 2
    assert r.launches == 7
    assert r.cost == pytest.approx(1.0 + 2 * 2.5 + 2.5 + OD * 1.0)


@pytest.mark.parametrize(
    "notice,availability", [(0.0, (7200 - 180 - 180) / (7200 - 180)), (600.0, 1.0)]
)
def test_skyhedge_replaces_a_replica_on_notice_before_the_kill(
    notice: float, availability: float
) -> None:
    spec = make_spec(replicas=1, overprovision=0)
    r = simulate(
        spec,
        trace(("z-1a", "10", 1.0), ("z-1c", "11", 2.5)),
        SimConfig(notice_seconds=notice),
    )
    assert r.availability == pytest.approx(availability)


def test_window_and_replica_override() -> None:
    tr = trace(("z-1a", "0111", 1.0))
    r = simulate(
        make_spec(replicas=3, use_spot=False),
        tr,
        SimConfig(replicas=2, start_tick=1, ticks=2),
    )
    assert r.hours == 2.0
    assert r.replicas == 2
    assert r.cost == pytest.approx(2 * OD * 2)
    assert r.lower_bound == pytest.approx(2 * 1.0 * 2)


def test_lower_bound_takes_the_cheapest_available_price_per_tick() -> None:
    tr = trace(("z-1a", "100", 1.0), ("z-1b", "110", 2.0))
    assert lower_bound(tr, 2, OD) == pytest.approx(2 * (1.0 + 2.0 + OD))


def test_renderings_carry_every_figure() -> None:
    r = simulate(make_spec(replicas=1, use_spot=False), trace(("z-1a", "11", 1.0)))
    (row,) = json.loads(to_json([r]))
    assert row["cost"] == pytest.approx(10.0) and row["cost_over_bound"] == pytest.approx(5.0)
    assert {"availability", "availability_any", "lower_bound", "failed_launches"} <= set(row)
    table = format_table([r])
    assert "ondemand_only" in table and "100.000%" in table and "5.00x" in table


def test_timeline_is_recorded_only_when_asked() -> None:
    spec = make_spec(replicas=1, use_spot=False)
    assert simulate(spec, trace(("z-1a", "11", 1.0))).timeline == ()
    tl = simulate(spec, trace(("z-1a", "11", 1.0)), SimConfig(timeline=True)).timeline
    assert [p.ready_ondemand for p in tl] == [0, 1, 1]
    assert tl[-1].cost == pytest.approx(2 * OD)
