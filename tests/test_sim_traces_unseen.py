"""``skyctl sim`` on traces it has never seen: every shipped manifest replays them sanely.

Valid traces are generated (tests/helpers/trace_gen.py) in the three on-disk
formats with tick gaps, zone counts (1, 30), lengths (1 tick, a year), start
dates and availability patterns (always, never, flapping every tick, long
outages, region-wide outages, random) the bundled traces lack. Every shipped
manifest replays each one: availability within [0, 1], cost at least the lower
bound, no negative hours, launches that got an instance within 2 x
(preemptions + target), and no location asked for spot again before its
capacity hold ends (policies/capacity.py). Arguments at their edges give one
line naming what is allowed, exit 2; hostile traces: tests/test_sim_traces_hostile.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from policies import capacity
from skyctl.cli_sim import sim
from skyctl.errors import ConfigError
from skyctl.sim import SimConfig, simulate
from skyctl.spec_yaml import load_spec_file
from skyctl.traces import load_trace
from tests.helpers import spot_launches
from tests.helpers import trace_gen as gen

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = sorted(ROOT.glob("manifests/*.yaml"))
VLLM = str(ROOT / "manifests/skyserve-vllm.yaml")
PATTERNS = ("all", "never", "flap", "long", "regional", "random")


def replay(
    manifest: Path | str, folder: Path, monkeypatch: pytest.MonkeyPatch, *extra: str
) -> tuple[dict[str, float], str, dict[str, list[tuple[int, float, bool]]]]:
    """One replay through the CLI (JSON); also every spot launch outcome per location."""
    seen = spot_launches.watch(monkeypatch)
    res = CliRunner().invoke(sim, [str(manifest), "--trace", str(folder), "-o", "json", *extra])
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.stdout)
    return row, res.stderr, seen


def assert_sane(
    manifest: Path | str, row: dict[str, float], seen: dict[str, list[tuple[int, float, bool]]]
) -> None:
    rp = load_spec_file(str(manifest)).service.replica_policy
    target = rp.min_replicas + (rp.num_overprovision or 0)
    assert 0.0 <= row["availability"] <= row["availability_any"] <= 1.0, row
    assert row["hours"] > 0 and row["measured_hours"] >= 0, row
    assert row["ondemand_hours"] >= 0 and row["spot_hours"] >= 0, row
    if not row["failure"]:  # a service given up runs nothing: below the bound for N
        assert row["cost"] >= row["lower_bound"] * (1 - 1e-9) - 1e-9, row
    assert row["lower_bound"] <= row["ondemand_cost"] * (1 + 1e-9), row
    granted = row["launches"] - row["failed_launches"]
    assert granted <= 2 * (row["preemptions"] + target), row
    # refusals are bounded: no location asked again before its capacity hold ends
    # (the last plan's refusals are seen by no plan after it: at most its launches)
    watched = spot_launches.refused(seen)
    assert watched <= row["failed_launches"] <= watched + target, (watched, row)
    spot_launches.assert_holds_respected(seen)


# ---------------------------------------------------------------- valid, unseen traces


@pytest.mark.parametrize("kind", PATTERNS)
@pytest.mark.parametrize("zones", [1, 30])
@pytest.mark.parametrize("fmt", ["aws", "aws-noprices", "gcp", "counts"])
def test_every_manifest_replays_an_unseen_trace_sanely(
    fmt: str, zones: int, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gap = {"aws": 195.0, "aws-noprices": 60.0, "gcp": 600.0, "counts": 300.0}[fmt]
    folder = gen.write(fmt, tmp_path / "t", kind, zones, 120, gap)
    for manifest in MANIFESTS:
        row, err, seen = replay(manifest, folder, monkeypatch)
        assert_sane(manifest, row, seen)
        assert "error" not in err
        if kind == "all" and fmt != "counts":  # counts: caps of 1 to 4 still preempt
            assert row["availability"] == 1.0 and row["failed_launches"] == 0
        if kind == "never":
            assert row["preemptions"] == 0 and row["spot_hours"] == 0
            assert row["cost"] == pytest.approx(row["lower_bound"])  # on-demand throughout


@pytest.mark.parametrize(
    "fmt,gap,ticks",
    [
        ("aws", 3600.0, 24 * 366),  # a (leap) year of hourly ticks
        ("gcp", 3600.0, 24 * 365),
        ("counts", 900.0, 4 * 24 * 365),
    ],
)
def test_a_year_long_trace_replays(
    fmt: str, gap: float, ticks: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = gen.write(fmt, tmp_path / "t", "random", 3, ticks, gap)
    row, _, seen = replay(VLLM, folder, monkeypatch)
    assert_sane(VLLM, row, seen)
    assert row["hours"] == pytest.approx(ticks * gap / 3600)


@pytest.mark.parametrize("fmt", ["aws", "gcp", "counts"])
def test_a_one_tick_trace_replays_and_says_when_nothing_was_measured(
    fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = gen.write(fmt, tmp_path / "t", "all", 2, 1, 60.0)
    if fmt == "aws":  # one row: the tick length cannot come from the dates
        (folder / "trace.json").write_text('{"ondemand_price": 3.06, "gap_seconds": 60}')
    row, err, seen = replay(VLLM, folder, monkeypatch)
    assert_sane(VLLM, row, seen)
    assert row["hours"] == pytest.approx(60 / 3600)
    # the 60 s window ends before the 180 s cold start: availability is not measured
    assert row["measured_hours"] == 0 and row["availability"] == 0
    assert "no availability was measured" in err


@pytest.mark.parametrize(
    "start",
    ["1970-01-01T00:00:00+00:00", "2024-02-29T23:59:30+00:00", "2099-12-31T12:00:00-08:00"],
)
def test_start_dates_do_not_change_the_figures(
    start: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    avail = gen.pattern("long", gen.zone_names(4, gcp=True), 200)
    rows = []
    for i, s in enumerate(("2025-10-04T00:10:00+00:00", start)):
        row, _, _ = replay(VLLM, gen.write_gcp(tmp_path / f"g{i}", avail, start=s), monkeypatch)
        rows.append({k: v for k, v in row.items() if k != "trace"})
    assert rows[0] == rows[1]


def test_a_region_wide_outage_preempts_every_zone_of_the_region(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    zones = gen.zone_names(6)  # us-east-1a..f: one region
    folder = gen.write_aws(tmp_path / "t", gen.pattern("regional", zones, 200))
    row, _, seen = replay(VLLM, folder, monkeypatch)
    assert_sane(VLLM, row, seen)
    assert row["preemptions"] >= 1 and row["ondemand_hours"] > 0  # on-demand covered the outage
    assert row["availability"] > 0.9


def test_count_zones_of_unequal_length_are_cut_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = gen.write_counts(tmp_path / "c", {"us-east-1a": [4] * 30, "us-west-2a": [2] * 20})
    row, err, _ = replay(VLLM, folder, monkeypatch)
    assert row["hours"] == pytest.approx(20 * 300 / 3600)
    assert "warning: trace 'c': zones of unequal length cut to the shortest, 20 ticks" in err
    assert "us-east-1a 30" in err


def test_the_capacity_hold_has_no_float_overflow_after_many_refusals() -> None:
    # 3,000 replicas refused together in one zone came to 2.0 ** 3000 (OverflowError)
    assert capacity.hold(5000) == capacity.MAX_HOLD
    assert capacity.search_hold(5000) == capacity.MAX_HOLD
    assert [capacity.hold(n) for n in range(1, 9)] == [30, 60, 120, 240, 480, 960, 1920, 3600]


def test_many_replicas_refused_at_once_replay(tmp_path: Path) -> None:
    folder = gen.write("aws", tmp_path / "t", "random", 3, 20, 195.0)
    r = simulate(load_spec_file(VLLM), load_trace(str(folder)), SimConfig(replicas=1000))
    assert 0 <= r.availability <= 1 and r.failed_launches > 0


# ---------------------------------------------------------------- arguments at their edges


@pytest.fixture
def small(tmp_path: Path) -> Path:
    """3 zones, 100 ticks of 195 s (5.42 h)."""
    return gen.write_aws(tmp_path / "t", gen.pattern("random", gen.zone_names(3), 100))


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--hours", "0"], "Invalid value for '--hours': '0': must be a finite number > 0"),
        (["--hours", "-1"], "'--hours': '-1': must be a finite number > 0"),
        (["--hours", "nan"], "'--hours': 'nan': must be a finite number > 0"),
        (["--hours", "inf"], "'--hours': 'inf': must be a finite number > 0"),
        (["--hours", "6"], "--hours 6 goes past the end of trace 't': 5.417 h left from --start 0"),
        (["--hours", "1e300"], "--hours 1e+300 goes past the end"),
        (["--start", "-1"], "'--start': '-1': must be a finite number >= 0"),
        (["--start", "nan"], "'--start': 'nan': must be a finite number >= 0"),
        (["--start", "1e308"], "--start 1e+308 is past the end of trace 't' (5.4 h; allowed: 0 to"),
        (["--start", "5.42"], "--start 5.42 is past the end"),
        (
            ["--start", "5", "--hours", "1"],
            "--hours 1 goes past the end of trace 't': 0.4333 h left",
        ),
        (["--replicas", "0"], "'--replicas': 0 is not in the range 1<=x<=1000"),
        (["--replicas", "-3"], "'--replicas': -3 is not in the range"),
        (["--replicas", "1000000000"], "'--replicas': 1000000000 is not in the range 1<=x<=1000"),
        (["--cold-start", "-5"], "--cold-start '-5': expected SECONDS"),
        (["--cold-start", "nan"], "--cold-start 'nan': expected SECONDS"),
        (["--cold-start", "1e12"], "--cold-start '1e12': figures are at most 1e+07 seconds"),
        (
            ["--cold-start", "lognormal:100:50"],
            "--cold-start 'lognormal:100:50': SIGMA is at most 5",
        ),
        (["--notice", "nan"], "'--notice': 'nan': must be a finite number >= 0"),
        (["--ondemand-price", "inf"], "'--ondemand-price': 'inf': must be a finite number > 0"),
    ],
)
def test_an_argument_at_its_edge_is_one_line_and_exit_2(
    small: Path, extra: list[str], message: str
) -> None:
    res = CliRunner().invoke(sim, [VLLM, "--trace", str(small), *extra])
    assert res.exit_code == 2, res.output
    assert message in res.output


@pytest.mark.parametrize(
    "extra,hours",
    [
        (["--hours", "0.0001"], 195 / 3600),  # at least one tick
        (["--hours", "5.4"], 100 * 195 / 3600),  # to the last tick
        (["--start", "5.35"], 195 / 3600),  # the last tick alone
        (["--replicas", "1000", "--hours", "0.5"], 9 * 195 / 3600),  # 9.2 ticks: 9
        (["--cold-start", "0"], 100 * 195 / 3600),
        (["--cold-start", "9999999"], 100 * 195 / 3600),  # warned: the service FAILED
    ],
)
def test_an_argument_within_its_range_replays(
    small: Path, extra: list[str], hours: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    row, _, seen = replay(VLLM, small, monkeypatch, *extra)
    assert row["hours"] == pytest.approx(hours)
    if "--replicas" not in extra:
        assert_sane(VLLM, row, seen)


def test_a_spec_with_more_replicas_than_a_replay_holds_is_refused(small: Path) -> None:
    spec = load_spec_file(VLLM)
    with pytest.raises(ConfigError, match="replicas 5,000: the simulator replays at most 1,000"):
        simulate(spec, load_trace(str(small)), SimConfig(replicas=5000))
    with pytest.raises(ConfigError, match="outside trace"):
        simulate(spec, load_trace(str(small)), SimConfig(start_tick=200))


# ---------------------------------------------------------------- archives, writers, the benchmark


def test_an_unseen_trace_in_an_archive_and_a_path_with_a_hash_replay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = gen.write("gcp", tmp_path / "g#1", "long", 5, 100, 600.0)
    row, _, _ = replay(VLLM, folder, monkeypatch)
    packed, _, _ = replay(VLLM, gen.tar_of(folder, tmp_path / "g.tar.xz", "w:xz"), monkeypatch)
    assert {**row, "trace": ""} == {**packed, "trace": ""}


def test_the_speed_benchmark_replays_an_unseen_trace_or_says_why_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import sim_speed

    folder = gen.write("counts", tmp_path / "c", "random", 30, 200, 300.0)
    sim_speed.main(["spothedge", "--trace", str(folder)])
    assert "spothedge on c: 200 ticks x 30 zones" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        sim_speed.main(["spothedge", "--trace", "/dev/zero"])
    assert stop.value.code == 2
    assert capsys.readouterr().err == (
        "error: trace /dev/zero: not a folder or a regular file; a trace is a folder, "
        "a tar or a zip archive\n"
    )


def test_an_aws_csv_written_by_other_tools_loads_the_same(tmp_path: Path) -> None:
    plain = gen.aws_raw(tmp_path / "plain", gen.OK_CSV, prices='{"us-east-1a_v100_1": [1, 2, 3]}')
    other = (
        "\ufeffID,Date,Availability\r\n"  # a BOM, CRLF, capitals, another column first
        '7,2023-01-01T00:00:00Z,1.0\r\n8,"2023-01-01T00:04:58+00:00",0.0\r\n'  # jittered
        "9,2023-01-01T00:10:01Z,1\r\n\r\n"
    )
    variant = gen.aws_raw(
        tmp_path / "variant", other, prices='{"us-east-1a": [1, 2, 3]}'
    )  # by zone
    a, b = load_trace(str(plain)), load_trace(str(variant))
    assert a.zones[0].available == b.zones[0].available == (True, False, True)
    assert a.zones[0].spot_price == b.zones[0].spot_price == (1.0, 2.0, 3.0)
    assert (a.start, a.gap_seconds) == (b.start, b.gap_seconds) == (1672531200.0, 300.0)


def test_a_plot_file_type_matplotlib_cannot_write_is_refused_before_the_replay(small: Path) -> None:
    res = CliRunner().invoke(sim, [VLLM, "--trace", str(small), "--plot", "out.txt"])
    assert res.exit_code == 2
    assert res.output == (
        "error: --plot out.txt: the file type comes from its name; allowed: "
        ".png, .svg, .pdf, .jpg, .jpeg\n"
    )


def test_a_relative_trace_path_is_found_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gen.write("aws", tmp_path / "traces" / "mine", "long", 2, 50, 195.0)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(sim, [VLLM, "--trace", "traces/mine", "-o", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["trace"] == "mine"
    empty = CliRunner().invoke(sim, [VLLM, "--trace", ""])
    assert empty.exit_code == 2 and "--trace '': expected a bundled trace name" in empty.output


def test_free_spot_capacity_reads_no_ratio_to_the_lower_bound(tmp_path: Path) -> None:
    avail = gen.pattern("all", gen.zone_names(2), 20)
    folder = gen.write_aws(tmp_path / "t", avail, prices={z: [0.0] * 20 for z in avail})
    res = CliRunner().invoke(sim, [VLLM, "--trace", str(folder), "--policy", "cheapest_spot"])
    assert res.exit_code == 0, res.output
    assert "lower bound $0 " in res.output
    row = res.output.splitlines()[-1].split()
    assert row[0] == "cheapest_spot" and row[4] == "0.0%" and row[5] == "n/a"
