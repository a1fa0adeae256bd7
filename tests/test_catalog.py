"""The shared instance-type catalog: loading, overriding and matching resources."""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.catalog import (
    COLUMNS,
    CatalogEntry,
    load_catalog,
    match,
    parse_catalog,
    parse_quantity,
    regions,
)
from skyctl.errors import ConfigError, SpecError
from skyctl.spec import ResourceCandidate

HEADER = ",".join(COLUMNS)

SMALL = f"""# test catalog, source: hand-written
{HEADER}
m5.large,,0,2,8,us-east-1,0.096,0.035
m5.2xlarge,,0,8,32,us-east-1,0.384,0.14
c5.2xlarge,,0,8,16,us-east-1,0.34,
g5.xlarge,A10G,1,4,16,us-east-1,1.006,0.4
p4d.24xlarge,A100,8,96,1152,us-west-2,32.7726,12.0
p3.2xlarge,V100,1,8,61,us-west-2,3.06,0.92
"""


@pytest.fixture
def small() -> list[CatalogEntry]:
    return parse_catalog(SMALL, source="small.csv")


def types(entries: list[CatalogEntry]) -> list[str]:
    return [e.instance_type for e in entries]


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        (ResourceCandidate(), ["m5.large", "c5.2xlarge", "m5.2xlarge"]),
        (ResourceCandidate(cpus="8"), ["c5.2xlarge", "m5.2xlarge"]),
        (ResourceCandidate(cpus="4+"), ["c5.2xlarge", "m5.2xlarge"]),
        (ResourceCandidate(cpus="8", memory="32"), ["m5.2xlarge"]),
        (ResourceCandidate(memory="16+"), ["c5.2xlarge", "m5.2xlarge"]),
        (ResourceCandidate(accelerators={"A100": 8}), ["p4d.24xlarge"]),
        (ResourceCandidate(accelerators={"a100": 8}), ["p4d.24xlarge"]),
        (ResourceCandidate(accelerators={"A100": 1}), []),
        (ResourceCandidate(accelerators={"V100": 1, "A10G": 1}), ["g5.xlarge", "p3.2xlarge"]),
        (ResourceCandidate(accelerators={"V100": 1}, cpus="16+"), []),
        (ResourceCandidate(instance_type="g5.xlarge"), ["g5.xlarge"]),
        (ResourceCandidate(instance_type="m5.large", cpus="8+"), []),
        (ResourceCandidate(region="us-west-2", accelerators={"V100": 1}), ["p3.2xlarge"]),
        (ResourceCandidate(region="eu-west-1"), []),
    ],
)
def test_match_selects_types_satisfying_the_candidate_cheapest_first(
    small: list[CatalogEntry], candidate: ResourceCandidate, expected: list[str]
) -> None:
    assert types(match(candidate, small)) == expected


def test_a_cpu_only_request_never_matches_gpu_types(small: list[CatalogEntry]) -> None:
    assert all(e.accelerator_count == 0 for e in match(ResourceCandidate(cpus="1+"), small))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("8", (8.0, False)), ("8+", (8.0, True)), (" 0.5+ ", (0.5, True)), ("32", (32.0, False))],
)
def test_parse_quantity_reads_exact_and_at_least(text: str, expected: tuple[float, bool]) -> None:
    assert parse_quantity(text, "resources.cpus") == expected


@pytest.mark.parametrize("text", ["", "+8", "eight", "8++", "-1", "8 GB"])
def test_parse_quantity_rejects_other_forms_naming_the_key(text: str) -> None:
    with pytest.raises(SpecError, match=r"resources\.memory"):
        parse_quantity(text, "resources.memory")


def test_entries_carry_prices_and_accelerator_label(small: list[CatalogEntry]) -> None:
    by_type = {e.instance_type: e for e in small}
    assert by_type["p4d.24xlarge"].accelerators == "A100:8"
    assert by_type["m5.large"].accelerators == ""
    assert by_type["c5.2xlarge"].spot_price is None
    assert by_type["g5.xlarge"].spot_price == pytest.approx(0.4)
    assert regions(small) == ["us-east-1", "us-west-2"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty catalog"),
        ("instance_type,region\nm5.large,us-east-1\n", "missing column"),
        (f"{HEADER}\nm5.large,,0,2,8,us-east-1,0.096\n", r"small\.csv:2: expected 8 fields"),
        (f"{HEADER}\nm5.large,,0,two,8,us-east-1,0.096,\n", "vcpus must be a number"),
        (f"{HEADER}\nm5.large,,0,2,8,us-east-1,-1,\n", "ondemand_price must be >= 0"),
        (f"{HEADER}\ng5.xlarge,A10G,0,4,16,us-east-1,1.0,\n", "both set or both empty"),
        (f"{HEADER}\ng5.xlarge,A10G,1.5,4,16,us-east-1,1.0,\n", "must be an integer"),
        (f"{HEADER}\n,,0,2,8,us-east-1,0.096,\n", "instance_type is empty"),
        (f"{HEADER}\nm5.large,,0,2,8,,0.096,\n", "region is empty"),
    ],
)
def test_malformed_catalogs_fail_with_a_one_line_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_catalog(text, source="small.csv")
    assert "\n" not in str(info.value)


def test_bundled_aws_catalog_loads_and_covers_common_gpus() -> None:
    entries = load_catalog("aws")
    accelerators = {e.accelerator_name for e in entries}
    assert {"T4", "A10G", "L4", "V100", "A100", "H100"} <= accelerators
    assert all(e.ondemand_price > 0 for e in entries)
    assert all(e.spot_price is None or e.spot_price < e.ondemand_price for e in entries)


def test_override_file_replaces_matching_rows_and_adds_new_ones(tmp_path: Path) -> None:
    override = tmp_path / "mine.csv"
    override.write_text(
        f"{HEADER}\nm5.large,,0,2,8,us-east-1,0.5,0.1\nx9.huge,B200,8,224,2048,us-east-1,99.0,\n"
    )
    bundled = load_catalog("aws")
    merged = load_catalog("aws", str(override))
    m5 = [e for e in merged if (e.instance_type, e.region) == ("m5.large", "us-east-1")]
    assert [e.ondemand_price for e in m5] == [0.5]
    assert types(match(ResourceCandidate(accelerators={"B200": 8}), merged)) == ["x9.huge"]
    assert len(merged) == len(bundled) + 1


def test_missing_override_file_and_unknown_cloud_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"aws\.catalog: cannot read"):
        load_catalog("aws", str(tmp_path / "absent.csv"))
    with pytest.raises(ConfigError, match="no bundled catalog for cloud 'nimbus'"):
        load_catalog("nimbus")
