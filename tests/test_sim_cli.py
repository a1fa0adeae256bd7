"""``skyctl sim``: table, JSON and plot output, and one-line errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from skyctl.cli_sim import sim

SPEC = """
name: cli-sim
resources:
  accelerators: V100:1
  use_spot: true
service:
  readiness_probe: /
  replicas: 1
run: python -m http.server $PORT
"""


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    """A spec and an AWS-layout trace folder: one zone, 1 h ticks, out in hour 2."""
    spec = tmp_path / "svc.yaml"
    spec.write_text(SPEC)
    folder = tmp_path / "trace"
    (folder / "availability").mkdir(parents=True)
    rows = ["date,availability"] + [
        f"2023-01-01 0{h}:00:00,{a}" for h, a in enumerate([1, 0, 1, 1])
    ]
    (folder / "availability" / "us-east-1a_v100_1.csv").write_text("\n".join(rows) + "\n")
    (folder / "spot_prices.json").write_text(json.dumps({"us-east-1a_v100_1": [1.0] * 4}))
    (folder / "trace.json").write_text(json.dumps({"ondemand_price": 4.0}))
    return spec, folder


def test_json_output_per_policy(files: tuple[Path, Path]) -> None:
    spec, folder = files
    args = [str(spec), "--trace", str(folder), "-o", "json"]
    res = CliRunner().invoke(sim, [*args, "--policy", "ondemand_only", "--policy", "cheapest_spot"])
    assert res.exit_code == 0, res.output
    rows = {r["policy"]: r for r in json.loads(res.output)}
    assert rows["ondemand_only"]["cost"] == pytest.approx(4 * 4.0)
    assert rows["ondemand_only"]["availability"] == 1.0
    assert rows["cheapest_spot"]["preemptions"] == 1
    assert rows["cheapest_spot"]["lower_bound"] == pytest.approx(1.0 + 4.0 + 1.0 + 1.0)


def test_table_output_with_a_window(files: tuple[Path, Path]) -> None:
    spec, folder = files
    res = CliRunner().invoke(
        sim,
        [
            str(spec),
            "--trace",
            str(folder),
            "--policy",
            "ondemand_only",
            "--start",
            "2",
            "--hours",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "2.0 h, N = 1" in res.output and "ondemand_only" in res.output


def test_plot_writes_a_png(files: tuple[Path, Path], tmp_path: Path) -> None:
    spec, folder = files
    out = tmp_path / "sim.png"
    res = CliRunner().invoke(
        sim, [str(spec), "--trace", str(folder), "--policy", "skyhedge", "--plot", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--policy", "nope"], "unknown spot policy 'nope'"),
        (["--start", "99"], "--start 99 is past the end"),
        (["--replicas", "0"], "Invalid value for '--replicas'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    files: tuple[Path, Path], extra: list[str], message: str
) -> None:
    spec, folder = files
    res = CliRunner().invoke(sim, [str(spec), "--trace", str(folder), *extra])
    assert res.exit_code == 2
    assert message in res.output


def test_missing_trace_is_a_clear_error(files: tuple[Path, Path], tmp_path: Path) -> None:
    spec, _ = files
    res = CliRunner().invoke(sim, [str(spec), "--trace", str(tmp_path / "none")])
    assert res.exit_code == 2
    assert res.output.count("\n") == 1 and "no such file or folder" in res.output


def test_ondemand_price_flag_prices_a_trace_that_lacks_one(files: tuple[Path, Path]) -> None:
    spec, folder = files
    (folder / "trace.json").unlink()
    args = [str(spec), "--trace", str(folder), "--policy", "ondemand_only", "-o", "json"]
    refused = CliRunner().invoke(sim, args)
    assert refused.exit_code == 2
    assert "no on-demand price" in refused.output and "--ondemand-price" in refused.output
    res = CliRunner().invoke(sim, [*args, "--ondemand-price", "2.5"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)[0]["cost"] == pytest.approx(4 * 2.5)


def test_cold_start_distribution_and_seed(files: tuple[Path, Path]) -> None:
    spec, folder = files
    base = [str(spec), "--trace", str(folder), "--policy", "cheapest_spot", "-o", "json"]

    def availability(*extra: str) -> float:
        res = CliRunner().invoke(sim, [*base, *extra])
        assert res.exit_code == 0, res.output
        return float(json.loads(res.stdout)[0]["availability"])  # a warning goes to stderr

    dist = ("--cold-start", "uniform:60:3000")
    assert availability(*dist, "--seed", "4") == availability(*dist, "--seed", "4")
    bad = CliRunner().invoke(sim, [*base, "--spot-cold-start", "soon"])
    assert bad.exit_code == 2 and "--spot-cold-start 'soon'" in bad.output
