"""`skyctl sim --plot` with several policies: one figure, the zones drawn once, a
ready panel per policy, one cost-over-time panel for all, legends beside the data;
progress while it runs, only where a terminal shows it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from skyctl.cli_sim import sim
from skyctl.sim import SimConfig, simulate
from skyctl.spec_yaml import load_spec_file
from skyctl.traces import load_trace
from tests.test_sim_cli import SPEC

pytest.importorskip("matplotlib")

POLICIES = ["skyhedge", "ondemand_only", "cheapest_spot"]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    """A spec and an AWS-layout trace: two zones, 1 h ticks, each out for a while."""
    spec = tmp_path / "svc.yaml"
    spec.write_text(SPEC)
    folder = tmp_path / "trace"
    (folder / "availability").mkdir(parents=True)
    prices = {}
    for zone, avail in (("us-east-1a", [1, 0, 1, 1, 1, 1]), ("us-east-1b", [1, 1, 1, 0, 0, 1])):
        rows = ["date,availability"] + [f"2023-01-01 0{h}:00:00,{a}" for h, a in enumerate(avail)]
        (folder / "availability" / f"{zone}_v100_1.csv").write_text("\n".join(rows) + "\n")
        prices[f"{zone}_v100_1"] = [1.0] * len(avail)
    (folder / "spot_prices.json").write_text(json.dumps(prices))
    (folder / "trace.json").write_text(json.dumps({"ondemand_price": 4.0}))
    return spec, folder


def test_one_figure_compares_the_policies_with_the_zones_once(
    files: tuple[Path, Path],
) -> None:
    from skyctl.sim.plot import figure

    spec_file, folder = files
    spec = load_spec_file(str(spec_file))
    trace = load_trace(str(folder))
    results = [simulate(spec, trace, SimConfig(policy=p, timeline=True)) for p in POLICIES]
    fig = figure(results, trace)
    axes = fig.axes
    assert len(axes) == 1 + len(POLICIES) + 1
    assert [len(ax.images) for ax in axes] == [1] + [0] * (len(POLICIES) + 1)  # zones once
    titles = [ax.get_title() for ax in axes[1:-1]]
    assert [t.split(":")[0] for t in titles] == POLICIES
    cost = axes[-1]
    assert len(cost.get_lines()) == len(POLICIES) + 2  # each policy, on-demand, lower bound
    fig.canvas.draw()
    for ax in axes[1:]:  # every legend beside its panel, never over the data
        legend = ax.get_legend()
        assert legend is not None
        assert legend.get_window_extent().x0 >= ax.get_window_extent().x1


def test_several_policies_print_every_policy_and_plot(
    files: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    spec, folder = files
    out = tmp_path / "sim.png"
    args = [str(spec), "--trace", str(folder), "--plot", str(out)]
    for p in POLICIES:
        args += ["--policy", p]
    res = CliRunner().invoke(sim, args)
    assert res.exit_code == 0, res.output
    assert all(p in res.stdout for p in POLICIES)
    assert "replaying" not in res.stderr  # no progress bar where no terminal shows it
    assert out.read_bytes()[:4] == b"\x89PNG"
    shown = CliRunner(env={"FORCE_COLOR": "1"}).invoke(sim, args)
    assert "replaying cheapest_spot (3/3)" in shown.stderr
