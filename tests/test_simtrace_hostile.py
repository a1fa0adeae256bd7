"""Traces and ``skyctl sim`` arguments from an outside adversary: each is refused in one
line naming the file (the line or key) and what is allowed, or read as it means.

Found by building traces a user might bring and hostile ones (docs/simulator.md, "Trace
formats"): a tick of 1e300 s replayed for ever (hourly probes over the span), a number of
hundreds of digits was a traceback, prices near the float limit made costs ``inf`` (and
``-o json`` printed ``Infinity``), GCP zone files put beside each other without ``zones/``
read as counts with the opposite 0/1 convention, dates before 1970 held every launch back
(0 ready, $0), a blank line shifted the line numbers of errors, CR-only line endings were
refused with Python's advice, ``--plot``/``--html`` into a missing folder failed with a
traceback after the replay, and a spec with ``min_replicas: 0`` replayed no replica and
read 100% available.
"""

from __future__ import annotations

import json
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from skyctl.cli_sim import sim
from skyctl.errors import ConfigError
from skyctl.traces import Trace, ZoneTrace, load_trace
from tests.helpers import trace_gen as gen

ROOT = Path(__file__).resolve().parent.parent
HTTP = str(ROOT / "manifests/http-server.yaml")
CSV = "availability/us-east-1a_v100_1.csv"


def gcp_zone(root: Path, meta: dict[str, object], data: object, *, flat: bool = False) -> Path:
    folder = root if flat else root / "zones"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "us-central1-a.json").write_text(json.dumps({"metadata": meta, "data": data}))
    return root


GCP_META = {"gap_seconds": 600, "price_info": {"price": 1.0, "on_demand_price": 4.0}}


def refused(path: Path, *args: str) -> str:
    """The one line ``skyctl sim`` prints for ``path``; exit 2, nothing on stdout."""
    r = CliRunner().invoke(sim, [HTTP, "--trace", str(path), "-o", "json", *args])
    assert r.exit_code == 2, (r.output, r.exception)
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


# ---------------------------------------------------------------- time spans


def test_a_tick_so_long_the_replay_would_never_end_is_refused_naming_the_file(
    tmp_path: Path,
) -> None:
    gcp_zone(tmp_path, {**GCP_META, "gap_seconds": 1e300}, [0, 1, 0])
    line = refused(tmp_path)
    assert "zones/us-central1-a.json: 3 ticks of 1e+300 s span 8.33e+296 h" in line
    assert "a trace spans at most 2,500,000 h and 5,000,000 zone-hours" in line


def test_two_aws_rows_centuries_apart_are_refused_by_their_span(tmp_path: Path) -> None:
    rows = "date,availability\n1970-01-01 00:00:00,0\n2400-01-01 00:00:00,1\n"
    with pytest.raises(ConfigError, match=rf"{CSV}: 2 ticks of .* span 7,\d+,\d+ h over 1 zone"):
        load_trace(str(gen.aws_raw(tmp_path, rows)))


def test_a_count_trace_of_many_zones_is_refused_by_its_zone_hours(tmp_path: Path) -> None:
    counts = {f"us-east-{i}a": [1, 0] * 8 for i in range(1, 41)}  # 40 zones x 16 years
    gen.write_counts(tmp_path / "c", counts, gap=365 * 86400.0)
    with pytest.raises(ConfigError, match="span 140,160 h over 40 zone"):
        load_trace(str(tmp_path / "c"))


def test_a_long_trace_within_the_bounds_still_loads(tmp_path: Path) -> None:
    gen.write_counts(tmp_path / "c", {"us-east-1a": [1, 0, 1]}, gap=365 * 86400.0)
    assert load_trace(str(tmp_path / "c")).ticks == 3  # 3 years of one zone: 26,280 h


# ---------------------------------------------------------------- numbers


def test_a_number_of_hundreds_of_digits_is_refused_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "zones").mkdir()
    text = '{"metadata": {"gap_seconds": 6' + "0" * 400 + "}, " + '"data": [0, 1]}'
    (tmp_path / "zones" / "us-central1-a.json").write_text(text)
    line = refused(tmp_path, "--ondemand-price", "4")
    assert "zones/us-central1-a.json: metadata.gap_seconds 6000" in line
    assert "...: must be a finite number > 0" in line and len(line) < 300


def test_a_number_of_thousands_of_digits_says_so(tmp_path: Path) -> None:
    (tmp_path / "zones").mkdir()
    text = json.dumps({"metadata": GCP_META, "data": [0]})[:-2] + ", 1" + "0" * 5000 + "]}"
    (tmp_path / "zones" / "us-central1-a.json").write_text(text)
    line = refused(tmp_path)
    assert line.endswith(
        "us-central1-a.json: a number of more than 4,300 digits; no trace value is that long"
    )


@pytest.mark.parametrize(
    "build,message",
    [
        (
            lambda r: gen.aws_raw(
                r, gen.OK_CSV, prices='{"us-east-1a_v100_1": [1e308, 1e308, 1e308]}'
            ),
            "spot_prices.json: us-east-1a_v100_1[0] 1e+308: must be a finite price >= 0, "
            "at most 1,000,000 (USD/h)",
        ),
        (
            lambda r: gen.aws_raw(r, gen.OK_CSV, trace_json='{"ondemand_price": 1e300}'),
            "trace.json: ondemand_price 1e+300: must be a finite number > 0, at most 1,000,000",
        ),
        (
            lambda r: gcp_zone(
                r, {**GCP_META, "price_info": {"price": 1, "on_demand_price": 1e300}}, [0]
            ),
            "metadata.price_info.on_demand_price 1e+300: must be a finite number > 0, at most",
        ),
        (
            lambda r: gcp_zone(r, {**GCP_META, "price_info": {"price": 2e6}}, [0]),
            "metadata.price_info.price 2000000.0: must be a finite number >= 0, at most",
        ),
    ],
    ids=["aws spot", "trace.json on-demand", "gcp on-demand", "gcp spot"],
)
def test_a_price_that_would_overflow_the_cost_is_refused(
    build: object, message: str, tmp_path: Path
) -> None:
    assert callable(build)
    assert message in refused(build(tmp_path))


def test_an_ondemand_price_argument_that_would_overflow_the_cost_is_refused(
    tmp_path: Path,
) -> None:
    folder = gen.aws_raw(tmp_path, gen.OK_CSV, trace_json="{}")
    r = CliRunner().invoke(sim, [HTTP, "--trace", str(folder), "--ondemand-price", "1e308"])
    assert r.exit_code == 2 and "'1e308': must be at most 1,000,000" in r.stderr
    with pytest.raises(ConfigError, match="ondemand_price 1e"):
        load_trace(str(folder), ondemand_price=1e300)


def test_json_output_is_strict_json_at_the_largest_prices_allowed(tmp_path: Path) -> None:
    prices = '{"us-east-1a_v100_1": [1e6, 1e6, 1e6]}'
    folder = gen.aws_raw(tmp_path, gen.OK_CSV, prices=prices, trace_json='{"ondemand_price": 1e6}')
    r = CliRunner().invoke(sim, [HTTP, "--trace", str(folder), "-o", "json", "--replicas", "1000"])
    assert r.exit_code == 0, r.output

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in -o json")

    (result,) = json.loads(r.stdout, parse_constant=refuse)
    assert 0 < result["cost"] < 1e12 and 0 <= result["availability"] <= 1


# ---------------------------------------------------------------- the 0/1 convention


def test_gcp_zone_files_outside_zones_are_refused_not_read_as_counts(tmp_path: Path) -> None:
    # 1 = preempted here; read as counts, 1 would mean available: the figures inverted
    meta = {"gap_seconds": 600, "start_time": "2025-10-04T00:10:00+00:00", "zone": "x"}
    gcp_zone(tmp_path, meta, [0, 0, 1, 0], flat=True)
    line = refused(tmp_path, "--ondemand-price", "4")
    assert (
        "us-central1-a.json: metadata.start_time: looks like a GCP zone file (1 = preempted)"
        in line
    )
    assert "put GCP files in a zones/ folder" in line


def test_count_files_inside_zones_are_refused_not_read_as_gcp(tmp_path: Path) -> None:
    gcp_zone(tmp_path, {**GCP_META, "nodes": 1}, [0, 1, 1])
    line = refused(tmp_path)
    assert "zones/us-central1-a.json: metadata.nodes: looks like a count file" in line


# ---------------------------------------------------------------- dates and lines


def test_dates_before_1970_are_refused_not_replayed_with_every_launch_held(
    tmp_path: Path,
) -> None:
    rows = "date,availability\n1969-12-31 23:50:00,1\n1969-12-31 23:55:00,1\n"
    with pytest.raises(ConfigError, match=rf"{CSV}:2: date '1969-12-31 23:50:00': before 1970"):
        load_trace(str(gen.aws_raw(tmp_path / "a", rows)))
    gcp_zone(tmp_path / "g", {**GCP_META, "start_time": "1900-01-01T00:00:00"}, [0])
    with pytest.raises(ConfigError, match=r"metadata\.start_time '1900-01-01T00:00:00': must be"):
        load_trace(str(tmp_path / "g"))
    with pytest.raises(ValueError, match="start must be finite epoch seconds >= 0"):
        Trace("t", -1.0, 60.0, (ZoneTrace("a", "r", (True,), None, None),), 1.0)


def test_an_error_names_the_line_of_the_file_counting_blank_lines(tmp_path: Path) -> None:
    rows = (
        "date,availability\n\n2023-01-01 00:00:00,1\n\n2023-01-01 00:05:00,1\n\n2023-01-01 soon,1\n"
    )
    with pytest.raises(ConfigError, match=rf"{CSV}:7: date '2023-01-01 soon'"):
        load_trace(str(gen.aws_raw(tmp_path, rows)))


def test_old_mac_line_endings_read_as_any_other(tmp_path: Path) -> None:
    lf = load_trace(str(gen.aws_raw(tmp_path / "lf", gen.OK_CSV)))
    cr = load_trace(str(gen.aws_raw(tmp_path / "cr", gen.OK_CSV.replace("\n", "\r"))))
    assert cr.zones[0].available == lf.zones[0].available == (True, False, True)
    assert (cr.start, cr.gap_seconds) == (lf.start, lf.gap_seconds)


def test_a_megabyte_value_is_cut_in_the_error(tmp_path: Path) -> None:
    folder = gen.aws_raw(tmp_path, gen.OK_CSV.replace(",0\n", ",0" + "x" * 100_000 + "\n"))
    line = refused(folder)
    assert f"{CSV}:3: availability '0xxx" in line and len(line) < 300


# ---------------------------------------------------------------- arguments and specs


@pytest.mark.parametrize("flag,name", [("--plot", "sim.png"), ("--html", "sim.html")])
def test_a_report_into_a_missing_folder_is_refused_before_the_replay(
    flag: str, name: str, tmp_path: Path
) -> None:
    folder = gen.aws_raw(tmp_path / "t", gen.OK_CSV)
    out = tmp_path / "missing" / name
    line = refused(folder, flag, str(out))
    assert line == f"error: {flag} {out}: no folder {out.parent}; the file's folder must exist"


def test_a_spec_of_no_replicas_is_refused_not_reported_fully_available(tmp_path: Path) -> None:
    spec = tmp_path / "svc.yaml"
    spec.write_text(
        "name: z\nresources:\n  use_spot: true\nservice:\n  readiness_probe: /\n"
        "  replica_policy:\n    min_replicas: 0\n    max_replicas: 3\n"
        "    target_qps_per_replica: 1\nrun: x\n"
    )
    folder = gen.aws_raw(tmp_path / "t", gen.OK_CSV)
    r = CliRunner().invoke(sim, [str(spec), "--trace", str(folder)])
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.startswith("error: replicas 0: the spec's min_replicas is 0")
    assert "set --replicas N (1 to 1,000)" in r.stderr
    ok = CliRunner().invoke(sim, [str(spec), "--trace", str(folder), "--replicas", "1"])
    assert ok.exit_code == 0, ok.output


# ---------------------------------------------------------------- irregular timestamps


def irregular_csv(rows: int) -> str:
    """Steps of 60, 60 and 115 s in turn: the median (60 s) is the tick, the dates span 30%
    more than the rows replayed evenly spaced."""
    t, out = 1_680_000_000.0, ["date,availability"]
    for i in range(rows):
        out.append(f"{gen._stamp(t)},1")
        t += 115 if i % 3 == 2 else 60
    return "\n".join(out) + "\n"


def test_irregular_timestamps_replayed_evenly_spaced_are_warned_about(tmp_path: Path) -> None:
    folder = gen.aws_raw(tmp_path, irregular_csv(600))
    assert load_trace(str(folder)).notes == (
        "us-east-1a_v100_1.csv's dates span 13.0 h, but its 600 rows are replayed evenly "
        "spaced, one tick of 60 s each: 10.0 h; resample the trace to one tick if the hours "
        "matter",
    )
    r = CliRunner().invoke(sim, [HTTP, "--trace", str(folder), "--policy", "ondemand_only"])
    assert r.exit_code == 0 and "warning: trace " in r.stderr and "dates span 13.0 h" in r.stderr


def test_timestamps_a_few_seconds_off_their_tick_are_not_warned_about(tmp_path: Path) -> None:
    jitter = [0, 3, -2, 5, -4, 1] * 20  # the bundled AWS data's steps run 194 to 280 s
    rows = ["date,availability"]
    rows += [f"{gen._stamp(1_680_000_000 + i * 195 + j)},1" for i, j in enumerate(jitter)]
    assert load_trace(str(gen.aws_raw(tmp_path, "\n".join(rows) + "\n"))).notes == ()


# ---------------------------------------------------------------- memory


def _load_peak(root: Path, zones: int) -> int:
    names = [f"us-east-1{c}" for c in "abcdef"[:zones]]
    gen.write_aws(root, gen.pattern("random", names, 10_000), gap=60.0)
    tracemalloc.start()
    try:
        load_trace(str(root))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_reading_a_small_file_allocates_its_size_not_the_64_mib_cap(tmp_path: Path) -> None:
    _load_peak(tmp_path / "warm", 1)  # imports and caches out of the count
    assert _load_peak(tmp_path / "one", 1) < 8 * 2**20  # 10,000 rows: 2 MB; was 64 MiB


def test_reading_more_zones_holds_about_one_zones_text_at_a_time(tmp_path: Path) -> None:
    # the first CSV's dates (200 MB at 3,000,000 rows) were held while every other one
    # was read: 3 files of 63 MiB took 1.5 GB; a digest of them now, 0.7 GB
    _load_peak(tmp_path / "warm", 1)
    one, six = _load_peak(tmp_path / "one", 1), _load_peak(tmp_path / "six", 6)
    assert six < 1.6 * one  # was 2.3x; the six zones' flags themselves add 0.3x


# ---------------------------------------------------------------- macOS's own files


APPLEDOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        "


def test_a_zip_finder_made_reads_as_its_trace(tmp_path: Path) -> None:
    # Finder's "Compress" adds __MACOSX/<folder>/... ; it read as a second trace
    folder = gen.aws_raw(tmp_path / "eu", gen.OK_CSV)
    archive = tmp_path / "eu.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                rel = f.relative_to(tmp_path).as_posix()
                zf.write(f, rel)
                head, _, base = rel.rpartition("/")
                zf.writestr(f"__MACOSX/{head}/._{base}", APPLEDOUBLE)
    trace = load_trace(str(archive))
    assert trace.zone_names() == ("us-east-1a",) and trace.ticks == 3


def test_appledouble_files_beside_the_data_are_not_read_as_zones(tmp_path: Path) -> None:
    # macOS's tar and non-Apple volumes keep ._<name> beside each file
    folder = gen.aws_raw(tmp_path / "eu", gen.OK_CSV)
    (folder / "availability" / "._us-east-1a_v100_1.csv").write_bytes(APPLEDOUBLE)
    (folder / "._trace.json").write_bytes(APPLEDOUBLE)
    assert load_trace(str(folder)).zone_names() == ("us-east-1a",)
    tarball = gen.tar_of(folder, tmp_path / "eu.tar.gz")
    assert load_trace(str(tarball)).zone_names() == ("us-east-1a",)
