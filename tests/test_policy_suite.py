"""The policy suite (benchmarks/policy_suite.py) on its tiny grid, and the synthetic traces."""

from __future__ import annotations

import pytest

from benchmarks import policy_suite, policy_suite_shipped
from skyctl.errors import ConfigError
from skyctl.sim.synthetic import FAMILIES, synthetic_trace


def test_the_quick_suite_tunes_on_one_set_and_reports_on_the_other() -> None:
    text = policy_suite.main(["--quick", "--workers", "1"])
    tune, held = text.split("## Held-out set, per policy", 1)
    assert "syn-independent-0" in tune and "Chosen: `risk_price = " in tune
    # the held-out traces are only in the report, never in the tuning table
    assert "syn-regional-1" not in tune.split("## Tuning", 1)[1]
    for policy in ("spothedge", "skyhedge", "skyhedge_online@1", "skyhedge_online@4"):
        assert f"| {policy} |" in held
    assert "| syn-regional-1 | 2 |" in held and "| syn-caps-1 | 2 |" in held
    assert "dominates / dominated / trade-off / equal" in held


def test_the_floor_is_passed_to_every_knob_and_named_in_the_report() -> None:
    # short outages, a 600 s cold start: the floor keeps an on-demand replica running
    job = policy_suite.Job("skyhedge_online@1", "syn:short:0@288", 2, 600.0, True)
    text = policy_suite.main(["--quick", "--workers", "1", "--floor", "0.001"])
    assert "`python -m benchmarks.policy_suite --quick --floor 0.001`" in text
    _, floored = policy_suite.run_job(job)
    plain = policy_suite.main(["--quick", "--workers", "1"])
    assert "--floor" not in plain.split("\n")[2]
    _, bare = policy_suite.run_job(job)
    assert floored["cost"] > bare["cost"]


def test_the_suite_refuses_more_than_two_workers(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        policy_suite.main(["--quick", "--workers", "3"])
    assert stop.value.code == 2
    assert "--workers 3: allowed 1 or 2" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("mine", "verdict"),
    [
        ((0.99, 1.0, 10.0), "equal"),
        ((0.995, 1.0, 10.0), "dominates"),
        ((0.99, 1.0, 9.0), "dominates"),
        ((0.98, 1.0, 10.0), "dominated"),
        ((0.99, 1.0, 11.0), "dominated"),
        ((0.995, 1.0, 11.0), "trade-off"),
    ],
)
def test_pareto_verdicts_against_the_peer(mine: tuple[float, float, float], verdict: str) -> None:
    peer = {"avail_n": 0.99, "avail_1": 1.0, "cost": 10.0}
    a = {"avail_n": mine[0], "avail_1": mine[1], "cost": mine[2]}
    assert policy_suite.pareto(a, peer) == verdict


# ---------------------------------------------------------------- synthetic traces


@pytest.mark.parametrize("family", FAMILIES)
def test_synthetic_traces_are_seeded(family: str) -> None:
    a = synthetic_trace(family, 3, ticks=500)
    assert a == synthetic_trace(family, 3, ticks=500)
    assert a != synthetic_trace(family, 4, ticks=500)
    assert a.ticks == 500 and len(a.zones) == 9 and a.ondemand_price > 0


def test_regional_outages_take_a_region_at_once() -> None:
    t = synthetic_trace("regional", 0)
    by_region: dict[str, list[tuple[bool, ...]]] = {}
    for z in t.zones:
        by_region.setdefault(z.region, []).append(z.available)
    together = sum(
        1 for cols in by_region.values() for tick in zip(*cols, strict=True) if not any(tick)
    )
    assert together > 0.02 * t.ticks  # whole regions out at once, often


def test_long_outages_last_longer_than_short_ones() -> None:
    def mean_down(family: str) -> float:
        runs, cur = [], 0
        for z in synthetic_trace(family, 0).zones:
            for a in (*z.available, True):
                if not a:
                    cur += 1
                elif cur:
                    runs.append(cur)
                    cur = 0
        return sum(runs) / len(runs)

    assert mean_down("long") > 10 * mean_down("short")


def test_price_spikes_and_capacity_caps() -> None:
    spikes = synthetic_trace("spikes", 0)
    assert any(max(p) > spikes.ondemand_price for p in spikes.spot_price_matrix())
    caps = synthetic_trace("caps", 0).capacity_matrix()
    assert all(c is not None and 0 <= min(c) and max(c) <= 8 for c in caps)


def test_unknown_family_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError, match="allowed: independent"):
        synthetic_trace("weekly", 0)


def test_the_shipped_manifests_report_compares_groups_and_counts_rises_and_falls() -> None:
    def fig(avail: float, cost: float, launches: int, refused: int) -> dict[str, float]:
        return {"avail": avail, "cost": cost, "launches": launches, "refused": refused}

    before = {
        "generated|aws-1-flap|skyserve-vllm": fig(0.90, 10.0, 20, 8),
        "generated|gcp-30-long|skyserve-vllm": fig(0.99, 30.0, 10, 2),
        "year-long|aws|skyserve-vllm": fig(0.98, 100.0, 50, 5),
    }
    after = {
        "generated|aws-1-flap|skyserve-vllm": fig(0.95, 12.0, 12, 3),
        "generated|gcp-30-long|skyserve-vllm": fig(0.98, 30.0, 10, 2),
        "year-long|aws|skyserve-vllm": fig(0.98, 90.0, 40, 4),
    }
    lines = policy_suite_shipped.report(after, before)
    row = next(line for line in lines if line.startswith("| generated, skyserve-vllm |"))
    # summed attempts (refused) and cost, mean availability, per group
    assert (
        row
        == "| generated, skyserve-vllm | 2 | 30 (10) -> 22 (5) | 94.500% -> 96.500% | 40 -> 42 |"
    )
    assert lines[-1] == "Availability rose in 1 of 3 replays, fell in 1, unchanged in 1."
    alone = policy_suite_shipped.report(after, None)
    assert "| year-long, skyserve-vllm | 1 | 40 (4) | 98.000% | 90 |" in alone
