"""skyctl.traces: bundled real traces, the three on-disk formats, one convention."""

from __future__ import annotations

import json
import tarfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from skyctl.errors import ConfigError
from skyctl.traces import Trace, ZoneTrace, bundled_traces, load_trace, region_of

# ---------------------------------------------------------------- hand-made folders


def make_aws(
    root: Path,
    zones: dict[str, list[int]],
    prices: dict[str, list[float]],
    ondemand: float | None = 3.06,
) -> Path:
    """AWS layout: availability/<zone>_v100_1.csv (1 = available) + spot_prices.json
    (+ our trace.json with the on-demand price, which the data lacks)."""
    (root / "availability").mkdir(parents=True)
    if ondemand is not None:
        (root / "trace.json").write_text(json.dumps({"ondemand_price": ondemand}))
    for zone, values in zones.items():
        rows = ["date,availability"]
        for i, v in enumerate(values):
            t = datetime.fromtimestamp(1_676_498_896 + 195 * i, tz=UTC)
            rows.append(f"{t:%Y-%m-%d %H:%M:%S},{v}")
        (root / "availability" / f"{zone}_v100_1.csv").write_text("\n".join(rows) + "\n")
    (root / "spot_prices.json").write_text(
        json.dumps({f"{z}_v100_1": p for z, p in prices.items()})
    )
    return root


def make_gcp(root: Path, zones: dict[str, list[int]], price: float, ondemand: float) -> Path:
    """GCP layout: zones/<zone>.json, data 1 = PREEMPTED/unavailable."""
    (root / "zones").mkdir(parents=True)
    for zone, values in zones.items():
        meta = {
            "gap_seconds": 600,
            "start_time": "2025-10-04T00:10:00+00:00",
            "zone": zone,
            "price_info": {
                "region": zone.rsplit("-", 1)[0],
                "price": price,
                "on_demand_price": ondemand,
            },
        }
        (root / "zones" / f"{zone}.json").write_text(json.dumps({"metadata": meta, "data": values}))
    return root


def make_counts(root: Path, zones: dict[str, list[int]], ondemand: float | None = 3.06) -> Path:
    """Multinode layout: <zone>_v100_1.json with counts (available = count > 0)."""
    root.mkdir(parents=True)
    if ondemand is not None:
        (root / "trace.json").write_text(json.dumps({"ondemand_price": ondemand}))
    for zone, values in zones.items():
        doc = {"metadata": {"gap_seconds": 300}, "data": values}
        (root / f"{zone}_v100_1.json").write_text(json.dumps(doc))
    return root


def avail(trace: Trace, zone: str) -> tuple[bool, ...]:
    return trace.zones[trace.zone_index(zone)].available


# ---------------------------------------------------------------- bundled traces


def test_bundled_traces_include_the_aws_and_gcp_traces() -> None:
    names = bundled_traces()
    assert {"aws-v100-2023-02", "gcp-h100-2025-10"} <= set(names)
    assert names == sorted(names)


def test_bundled_data_ships_with_its_licence_and_notice() -> None:
    data = Path(__file__).parent.parent / "skyctl" / "data" / "traces"
    assert "Apache License" in (data / "LICENSE").read_text()
    assert "SkyNomad" in (data / "NOTICE").read_text()
    assert sum(p.stat().st_size for p in data.iterdir()) < 4_000_000


def test_aws_trace_has_the_published_shape() -> None:
    trace = load_trace("aws-v100-2023-02")
    assert trace.ticks == 20_158
    assert trace.gap_seconds == 195
    assert trace.start == datetime(2023, 2, 15, 22, 8, 16, tzinfo=UTC).timestamp()
    assert len(trace.zones) == 9
    assert trace.ondemand_price == pytest.approx(3.06)
    assert trace.zones[trace.zone_index("us-east-2a")].region == "us-east-2"


def test_aws_trace_per_zone_availability_matches_the_readme() -> None:
    trace = load_trace("aws-v100-2023-02")
    fractions = {z.zone: trace.availability_fraction(i) for i, z in enumerate(trace.zones)}
    assert round(fractions["us-east-1a"], 3) == 0.167
    assert round(fractions["us-west-2b"], 3) == 0.905
    assert min(fractions, key=fractions.__getitem__) == "us-east-1a"
    assert max(fractions, key=fractions.__getitem__) == "us-west-2b"


@pytest.mark.parametrize(("k", "percent"), [(1, 99.21), (2, 97.72), (3, 93.32), (4, 85.03)])
def test_aws_trace_at_least_k_zones_available_matches_the_readme(k: int, percent: float) -> None:
    assert round(100 * load_trace("aws-v100-2023-02").at_least_available(k), 2) == percent


def test_aws_trace_spot_prices_are_per_tick_and_aligned() -> None:
    trace = load_trace("aws-v100-2023-02")
    i = trace.zone_index("us-east-1a")
    prices = trace.zones[i].spot_price
    assert isinstance(prices, tuple) and len(prices) == trace.ticks
    assert trace.spot_price(i, 0) == pytest.approx(1.6703)
    means = [sum(p) / len(p) for p in trace.spot_price_matrix()]
    assert 0.92 < min(means) < 0.94 and 1.64 < max(means) < 1.66  # README: $0.93 to $1.65


def test_gcp_trace_uses_metadata_prices_and_derives_regions() -> None:
    trace = load_trace("gcp-h100-2025-10")
    assert (trace.ticks, trace.gap_seconds, len(trace.zones)) == (2114, 600, 13)
    i = trace.zone_index("us-central1-a")
    assert trace.zones[i].region == "us-central1"
    assert trace.spot_price(i, 5) == pytest.approx(18.979008)
    assert trace.zones[i].ondemand_price == pytest.approx(82.52543396)
    assert trace.ondemand_price == pytest.approx(82.52543396)  # the cheapest zone's


def test_multinode_trace_is_bundled_with_counts_normalised() -> None:
    trace = load_trace("aws-v100-multinode-2023-08/4-nodes-real-preemption")
    assert trace.gap_seconds == 300
    assert {z.zone for z in trace.zones} == {"us-east-1f", "us-east-2a", "us-west-2c"}
    assert not avail(trace, "us-east-1f")[0]  # count 0 at tick 0
    assert avail(trace, "us-east-2a")[0]  # count 4 at tick 0


def test_loading_a_bundled_trace_twice_gives_the_same_object() -> None:
    assert load_trace("gcp-h100-2025-10") is load_trace("gcp-h100-2025-10")


# ---------------------------------------------------------------- the three formats


def test_aws_folder_one_means_available(tmp_path: Path) -> None:
    make_aws(tmp_path / "t", {"us-east-1a": [1, 0, 1], "us-west-2b": [0, 0, 1]}, {})
    trace = load_trace(str(tmp_path / "t"))
    assert avail(trace, "us-east-1a") == (True, False, True)
    assert avail(trace, "us-west-2b") == (False, False, True)
    assert trace.gap_seconds == 195
    assert trace.zones[0].spot_price is None


def test_aws_folder_spot_prices_follow_each_tick(tmp_path: Path) -> None:
    prices = {"us-east-1a": [1.0, 2.0, 3.0]}
    make_aws(tmp_path / "t", {"us-east-1a": [1, 1, 1]}, prices)
    trace = load_trace(str(tmp_path / "t"))
    assert [trace.spot_price(0, t) for t in range(3)] == [1.0, 2.0, 3.0]
    assert trace.spot_price(0, 4) == 2.0  # ticks wrap around like a replay


def test_aws_folder_with_misaligned_prices_is_rejected(tmp_path: Path) -> None:
    make_aws(tmp_path / "t", {"us-east-1a": [1, 1, 1]}, {"us-east-1a": [1.0]})
    with pytest.raises(ConfigError, match=r"spot_prices\.json"):
        load_trace(str(tmp_path / "t"))


def test_gcp_folder_one_means_preempted(tmp_path: Path) -> None:
    make_gcp(tmp_path / "g", {"us-central1-a": [0, 1, 1, 0]}, price=18.0, ondemand=80.0)
    trace = load_trace(str(tmp_path / "g"))
    assert avail(trace, "us-central1-a") == (True, False, False, True)
    assert trace.spot_price(0, 2) == 18.0
    assert trace.zone_ondemand_price(0) == 80.0
    assert trace.start == datetime(2025, 10, 4, 0, 10, tzinfo=UTC).timestamp()


def test_counts_folder_available_when_count_positive(tmp_path: Path) -> None:
    make_counts(tmp_path / "c", {"us-east-2b": [0, 3, 16, 0]})
    trace = load_trace(str(tmp_path / "c"))
    assert avail(trace, "us-east-2b") == (False, True, True, False)
    assert trace.gap_seconds == 300


def test_counts_are_capacity_caps(tmp_path: Path) -> None:
    make_counts(tmp_path / "c", {"us-east-2b": [0, 3, 16, 0]})
    trace = load_trace(str(tmp_path / "c"))
    assert trace.capacity_matrix() == [(0, 3, 16, 0)]
    assert trace.window(1, 2).capacity_matrix() == [(3, 16)]


def test_bundled_multinode_traces_carry_their_counts_as_caps() -> None:
    sixteen = load_trace("aws-v100-multinode-2023-08/16-nodes")
    caps = sixteen.capacity_matrix()
    assert all(c is not None and max(c) == 16 for c in caps)
    assert any(c is not None and 0 < min(v for v in c if v) < 16 for c in caps)
    four = load_trace("aws-v100-multinode-2023-08/4-nodes-real-preemption")
    assert all(c is not None and max(c) == 4 for c in four.capacity_matrix())
    assert load_trace("aws-v100-2023-02").capacity_matrix() == [None] * 9  # unlimited


@pytest.mark.parametrize("layout", ["aws", "counts"])
def test_a_trace_without_an_ondemand_price_is_refused_saying_what_to_pass(
    tmp_path: Path, layout: str
) -> None:
    if layout == "aws":
        make_aws(tmp_path / "x", {"us-east-1a": [1, 0]}, {}, ondemand=None)
    else:
        make_counts(tmp_path / "x", {"us-east-2b": [1, 0]}, ondemand=None)
    with pytest.raises(ConfigError) as err:
        load_trace(str(tmp_path / "x"))
    message = str(err.value)
    assert "no on-demand price" in message and "--ondemand-price" in message
    assert '"ondemand_price"' in message and "\n" not in message
    trace = load_trace(str(tmp_path / "x"), ondemand_price=2.5)
    assert trace.ondemand_price == 2.5 and trace.zone_ondemand_price(0) == 2.5


def test_a_trace_with_a_zero_ondemand_price_is_refused(tmp_path: Path) -> None:
    make_counts(tmp_path / "c", {"us-east-2b": [1, 0]}, ondemand=0.0)
    with pytest.raises(ConfigError, match=r"trace\.json: ondemand_price 0\.0: must be .* > 0"):
        load_trace(str(tmp_path / "c"))
    with pytest.raises(ConfigError, match="ondemand_price"):
        load_trace(str(tmp_path / "c"), ondemand_price=-1.0)
    with pytest.raises(ValueError, match="ondemand_price must be > 0"):
        Trace("t", 0.0, 1.0, (ZoneTrace("a-1a", "a-1", (True,), None, None),), 0.0)


def test_zones_of_unequal_length_are_cut_to_the_shortest(tmp_path: Path) -> None:
    make_counts(tmp_path / "c", {"us-east-2b": [1, 1, 1, 1], "us-west-2a": [0, 1]})
    assert load_trace(str(tmp_path / "c")).ticks == 2


def test_gcp_zone_files_alone_are_not_mistaken_for_counts(tmp_path: Path) -> None:
    make_gcp(tmp_path / "g", {"us-central1-a": [0, 1]}, price=1.0, ondemand=2.0)
    with pytest.raises(ConfigError, match="GCP zone file"):
        load_trace(str(tmp_path / "g" / "zones"))


def test_trace_json_supplies_what_the_data_lacks(tmp_path: Path) -> None:
    make_counts(tmp_path / "c", {"us-east-2b": [1, 0]})
    (tmp_path / "c" / "trace.json").write_text('{"ondemand_price": 4.0, "start": 100}')
    trace = load_trace(str(tmp_path / "c"))
    assert (trace.ondemand_price, trace.start) == (4.0, 100.0)
    assert trace.spot_price(0, 0) == pytest.approx(1.2)  # 30% of on-demand without a price


def test_malformed_csv_is_a_one_line_config_error(tmp_path: Path) -> None:
    (tmp_path / "t" / "availability").mkdir(parents=True)
    (tmp_path / "t" / "availability" / "us-east-1a_x.csv").write_text("date,availability\nx,1\n")
    with pytest.raises(ConfigError) as err:
        load_trace(str(tmp_path / "t"))
    assert "\n" not in str(err.value) and "us-east-1a_x.csv:2: date 'x'" in str(err.value)


# ---------------------------------------------------------------- archives and paths


def test_tar_archive_loads_like_its_folder(tmp_path: Path) -> None:
    folder = make_gcp(tmp_path / "g", {"us-east4-a": [0, 1, 0]}, price=14.0, ondemand=82.0)
    with tarfile.open(tmp_path / "g.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="g")
    from_tar = load_trace(str(tmp_path / "g.tar.gz"))
    assert from_tar.zones == load_trace(str(folder)).zones
    assert from_tar.name == "g"


def test_zip_archive_loads_like_its_folder(tmp_path: Path) -> None:
    folder = make_counts(tmp_path / "c", {"us-west-2c": [4, 0, 4]})
    with zipfile.ZipFile(tmp_path / "c.zip", "w") as zf:
        for p in folder.iterdir():
            zf.write(p, f"c/{p.name}")
    assert load_trace(str(tmp_path / "c.zip")).zones == load_trace(str(folder)).zones


def test_archive_with_several_traces_needs_a_folder(tmp_path: Path) -> None:
    make_counts(tmp_path / "m" / "a", {"us-east-1f": [1, 0]})
    make_counts(tmp_path / "m" / "b", {"us-east-2a": [0, 1]})
    with tarfile.open(tmp_path / "m.tar.xz", "w:xz") as tar:
        tar.add(tmp_path / "m", arcname="m")
    with pytest.raises(ConfigError, match="several traces"):
        load_trace(str(tmp_path / "m.tar.xz"))
    assert load_trace(f"{tmp_path / 'm.tar.xz'}#m/b").zone_names() == ("us-east-2a",)


def test_relative_path_resolves_against_base_dir(tmp_path: Path) -> None:
    make_counts(tmp_path / "traces" / "c", {"us-east-2b": [1]})
    assert load_trace("traces/c", base_dir=str(tmp_path)).name == "c"


def test_unknown_trace_error_lists_the_bundled_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_trace("no-such-trace", base_dir=str(tmp_path))
    message = str(err.value)
    assert "no-such-trace" in message and "aws-v100-2023-02" in message and "\n" not in message


def test_folder_without_trace_data_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no trace data; expected availability/"):
        load_trace(str(tmp_path / "empty"))


# ---------------------------------------------------------------- the model


def small_trace() -> Trace:
    zones = (
        ZoneTrace("us-east-1a", "us-east-1", (True, False, True, True), (1.0, 2.0, 3.0, 4.0), None),
        ZoneTrace("us-west-2b", "us-west-2", (False, True, True, False), 0.5, 2.0),
    )
    return Trace("small", 1000.0, 10.0, zones, 3.0)


def test_window_slices_availability_prices_and_start() -> None:
    w = small_trace().window(1, 2)
    assert w.ticks == 2 and w.start == 1010.0
    assert w.availability_matrix() == [(False, True), (True, True)]
    assert w.spot_price_matrix() == [(2.0, 3.0), (0.5, 0.5)]


@pytest.mark.parametrize(("start", "ticks"), [(-1, 2), (3, 2), (0, 0)])
def test_window_outside_the_trace_is_rejected(start: int, ticks: int) -> None:
    with pytest.raises(ValueError, match="outside trace"):
        small_trace().window(start, ticks)


def test_select_keeps_only_named_zones_in_order() -> None:
    trace = small_trace().select(["us-west-2b"])
    assert trace.zone_names() == ("us-west-2b",)
    with pytest.raises(ConfigError, match="us-east-1a, us-west-2b"):
        small_trace().select(["eu-west-1a"])


def test_tick_at_maps_epoch_time_to_ticks() -> None:
    trace = small_trace()
    assert [trace.tick_at(t) for t in (1000.0, 1009.9, 1010.0, 1035.0)] == [0, 0, 1, 3]


def test_zones_of_different_lengths_cannot_form_a_trace() -> None:
    zones = (
        ZoneTrace("a-1a", "a-1", (True,), None, None),
        ZoneTrace("a-1b", "a-1", (), None, None),
    )
    with pytest.raises(ValueError, match="different length"):
        Trace("bad", 0.0, 1.0, zones, 1.0)


@pytest.mark.parametrize(
    ("zone", "region"),
    [
        ("us-east-1a", "us-east-1"),
        ("us-west-2c", "us-west-2"),
        ("us-central1-a", "us-central1"),
        ("asia-southeast1-b", "asia-southeast1"),
        ("local", "local"),
    ],
)
def test_region_is_derived_from_the_zone_name(zone: str, region: str) -> None:
    assert region_of(zone) == region
