"""Simulator fidelity: capacity caps from count traces, cold starts as distributions."""

from __future__ import annotations

import random

import pytest

from skyctl.errors import ConfigError
from skyctl.sim import SimConfig, simulate
from skyctl.sim.coldstart import ColdStart, as_cold_start, parse_cold_start
from skyctl.traces import Trace, ZoneTrace
from tests.test_policies_support import make_spec

HOUR = 3600.0
OD = 5.0


def capped(*zones: tuple[str, tuple[int, ...], float]) -> Trace:
    """Count-trace zones as (name, per-hour caps, spot price): available = cap > 0."""
    return Trace(
        name="caps",
        start=0.0,
        gap_seconds=HOUR,
        zones=tuple(
            ZoneTrace(z, z[:-2], tuple(c > 0 for c in caps), p, None, caps) for z, caps, p in zones
        ),
        ondemand_price=OD,
    )


def test_a_zone_holds_no_more_spot_replicas_than_its_cap() -> None:
    # three wanted in one zone capped at 2: the third launch is refused every round
    r = simulate(make_spec(replicas=3, policy="cheapest_spot"), capped(("z-1a", (2, 2), 1.0)))
    assert r.availability == 0.0 and r.availability_any == 1.0
    assert r.cost == pytest.approx(2 * 2 * 1.0)  # two replicas for two hours
    assert r.failed_launches >= 1 and r.preemptions == 0


def test_a_cap_that_falls_preempts_the_newest_replicas_beyond_it() -> None:
    r = simulate(make_spec(replicas=3, policy="cheapest_spot"), capped(("z-1a", (3, 1), 1.0)))
    assert r.preemptions == 2
    assert r.cost == pytest.approx(3 * 1.0 + 1 * 1.0)  # three in hour 1, one in hour 2


def test_without_caps_the_same_zone_takes_every_replica() -> None:
    uncapped = Trace("u", 0.0, HOUR, (ZoneTrace("z-1a", "z-1", (True, True), 1.0, None),), OD)
    r = simulate(make_spec(replicas=3, policy="cheapest_spot"), uncapped)
    assert r.availability == 1.0 and r.failed_launches == 0


def test_spothedge_covers_a_full_zone_with_ondemand() -> None:
    # one replica per zone, the third refused by the full cheap zone; that zone is then
    # on hold (policies.capacity), so the third goes to 1b; on-demand covers the
    # cold starts (0.15 h) and drains
    spec = make_spec(replicas=3, placer="dynamic_fallback", dynamic=True)
    r = simulate(spec, capped(("z-1a", (1, 1, 1), 1.0), ("z-1b", (8, 8, 8), 2.0)))
    assert r.availability == 1.0
    assert r.spot_hours == pytest.approx(9.0) and r.ondemand_hours == pytest.approx(0.15)
    assert r.failed_launches == 1


def test_a_cap_drop_is_announced_before_the_preemption() -> None:
    # skyhedge acts on notices: with one it replaces the doomed replicas before the drop
    # (1b has room throughout: with none before the drop, the notice's refused probes there
    # lengthen its capacity hold past the drop, and the warned run ends up worse)
    trace = capped(("z-1a", (4, 2, 2), 1.0), ("z-1b", (2, 4, 4), 1.5))
    spec = make_spec(replicas=4, policy="skyhedge")
    silent = simulate(spec, trace, SimConfig(spot_cold_start=600.0, ondemand_cold_start=600.0))
    warned = simulate(
        spec,
        trace,
        SimConfig(spot_cold_start=600.0, ondemand_cold_start=600.0, notice_seconds=900.0),
    )
    assert silent.preemptions == warned.preemptions == 1
    assert warned.availability > silent.availability


# ---------------------------------------------------------------- cold starts


@pytest.mark.parametrize(
    ("text", "kind", "mean"),
    [
        ("120", "fixed", 120.0),
        ("uniform:60:300", "uniform", 180.0),
        ("normal:180:30", "normal", 180.0),
        ("choice:60,180,600", "choice", 280.0),
    ],
)
def test_cold_start_texts_parse_to_distributions(text: str, kind: str, mean: float) -> None:
    cs = parse_cold_start(text)
    assert (cs.kind, cs.mean) == (kind, pytest.approx(mean))
    assert str(parse_cold_start(str(cs))) == str(cs)


def test_lognormal_cold_starts_have_the_given_median() -> None:
    cs = parse_cold_start("lognormal:120:0.5")
    rng = random.Random(1)
    samples = sorted(cs.sample(rng) for _ in range(4001))
    assert samples[2000] == pytest.approx(120.0, rel=0.05)
    assert cs.mean > 120.0  # the right tail


@pytest.mark.parametrize(
    "text", ["", "fast", "uniform:300:60", "uniform:1", "normal:-5:1", "gamma:1:2", "nan"]
)
def test_bad_cold_start_texts_are_one_line_errors_naming_the_forms(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_cold_start(text, key="--spot-cold-start")
    assert "--spot-cold-start" in str(err.value) and "\n" not in str(err.value)


def test_a_figure_is_a_fixed_cold_start() -> None:
    assert as_cold_start(90) == ColdStart("fixed", (90.0,))
    with pytest.raises(ConfigError):
        as_cold_start(-1.0)


def test_cold_start_draws_are_seeded_and_change_the_outcome() -> None:
    trace = capped(("z-1a", (4, 0, 4, 0, 4, 4), 1.0), ("z-1b", (0, 4, 0, 4, 0, 4), 1.2))
    spec = make_spec(replicas=2, policy="spothedge")

    def run(seed: int) -> float:
        cfg = SimConfig(spot_cold_start="uniform:60:1800", seed=seed)
        return simulate(spec, trace, cfg).availability

    assert run(3) == run(3)
    assert len({run(s) for s in range(6)}) > 1
    fixed = simulate(spec, trace, SimConfig(spot_cold_start=300.0)).availability
    same = simulate(spec, trace, SimConfig(spot_cold_start="uniform:300:300")).availability
    assert fixed == same
