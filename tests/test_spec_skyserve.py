"""Values SkyServe accepts (and rejects) that its own example YAMLs use.

Each case is a form found in SkyPilot's service YAMLs (examples/, llm/,
tests/): ``gpus``, accelerators by memory, fractions, several accelerators with
``any_of``, a spec without ``run``, ``_metadata``; and what SkyServe refuses in
a service: ``job_recovery``, spot mixed with on-demand.
"""

from __future__ import annotations

import pytest

from skyctl.accelerators import devices_by_memory, parse_memory_accelerator
from skyctl.errors import SpecError
from skyctl.spec import ServiceSpec
from skyctl.spec_yaml import parse_spec


def spec(resources: str, extra: str = "") -> ServiceSpec:
    return parse_spec(f"resources:\n{resources}\nservice: {{}}\n{extra}run: serve\n", "s.yaml")


def accels(s: ServiceSpec) -> list[dict[str, float] | None]:
    return [c.accelerators for c in s.resources.candidates]


def test_gpus_is_an_alias_of_accelerators_but_not_both() -> None:
    assert accels(spec("  gpus: A100:8")) == [{"A100": 8}]
    assert accels(spec("  any_of:\n    - gpus: L4\n    - accelerators: T4")) == [
        {"L4": 1},
        {"T4": 1},
    ]
    with pytest.raises(SpecError, match=r"s.yaml:3: resources.gpus: give `gpus` or `accel"):
        spec("  accelerators: L4\n  gpus: T4")


def test_accelerators_by_memory_expand_to_every_device_with_that_much() -> None:
    at_least_24 = accels(spec("  accelerators: 24GB+"))
    names = [next(iter(a)) for a in at_least_24 if a]
    assert {"L4", "A10G", "A100", "H100"} <= set(names) and "T4" not in names
    assert all(a is not None and next(iter(a.values())) == 1 for a in at_least_24)
    assert accels(spec("  accelerators: 40GB+:2"))[0] == {"A100": 2}  # smallest first
    nvidia = accels(spec("  accelerators: nvidia:24GB+:1"))
    assert "MI300X" not in [next(iter(a)) for a in nvidia if a]
    assert accels(spec("  accelerators: amd:100GB+")) == [{"MI250": 1}, {"MI300X": 1}]
    assert accels(spec("  accelerators: {80GB: 8}")) == [
        {n: 8} for n in devices_by_memory(80, False)
    ]
    with pytest.raises(SpecError, match=r"resources.accelerators: no accelerator has 4TB\+"):
        spec("  accelerators: 4TB+")


def test_memory_forms_follow_skypilot_and_names_are_not_memory() -> None:
    assert parse_memory_accelerator("nvidia:24GB+:1") == ("nvidia", 24.0, True, 1.0)
    assert parse_memory_accelerator("40GB+:2") == (None, 40.0, True, 2.0)
    assert parse_memory_accelerator("24GB") == (None, 24.0, False, 1.0)
    assert parse_memory_accelerator("A100:8") is None
    assert parse_memory_accelerator("A100-80GB") is None


def test_fractional_counts_are_kept_as_fractions() -> None:
    assert accels(spec("  accelerators: T4:0.5")) == [{"T4": 0.5}]
    assert accels(spec("  accelerators: {T4: 0.25}")) == [{"T4": 0.25}]
    with pytest.raises(SpecError, match="must be a positive number"):
        spec("  accelerators: T4:0")


def test_several_accelerators_in_a_map_combine_with_any_of() -> None:
    s = spec(
        "  accelerators: {L4:4, L40S:4}\n  use_spot: true\n  any_of:\n"
        "    - infra: aws\n    - infra: gcp"
    )
    assert [(c.cloud, c.accelerators) for c in s.resources.candidates] == [
        ("aws", {"L4": 4}),
        ("aws", {"L40S": 4}),
        ("gcp", {"L4": 4}),
        ("gcp", {"L40S": 4}),
    ]


def test_any_of_mixing_spot_and_on_demand_is_refused_for_that_reason() -> None:
    # llm/rag/serve_rag.yaml
    with pytest.raises(SpecError) as err:
        spec(
            "  accelerators: {L4:4, L40S:4}\n  any_of:\n    - use_spot: true\n    - use_spot: false"
        )
    assert "s.yaml:5: resources.any_of[1].use_spot: resources must all use spot or none" in str(
        err.value
    )


def test_job_recovery_is_refused_in_a_service() -> None:
    with pytest.raises(SpecError, match=r"s.yaml:3: resources.job_recovery: job_recovery is for"):
        spec("  use_spot: true\n  job_recovery: FAILOVER")


def test_a_spec_without_run_and_metadata_are_accepted() -> None:
    s = parse_spec("service: {readiness_probe: /}\n_metadata: {origin: catalog}\n")
    assert s.run is None
    assert s.extra["_metadata"] == {"origin": "catalog"}


def test_clouds_skypilot_knows_parse_without_a_did_you_mean() -> None:
    assert spec("  infra: lambda").resources.candidates[0].cloud == "lambda"
    assert spec("  infra: oci/us-sanjose-1").resources.candidates[0].region == "us-sanjose-1"
    with pytest.raises(SpecError, match="did you mean 'lambda'"):
        spec("  cloud: lambdda")


def test_num_nodes_is_kept_up_to_the_cap() -> None:
    assert parse_spec("num_nodes: 1\nservice: {}\nrun: x\n").num_nodes == 1
    assert parse_spec("service: {}\nrun: x\n").num_nodes == 1
    assert parse_spec("num_nodes: 64\nservice: {}\nrun: x\n").num_nodes == 64
    with pytest.raises(SpecError, match=r":1: num_nodes: must be at most 64 nodes per replica"):
        parse_spec("num_nodes: 65\nservice: {}\nrun: x\n")
    with pytest.raises(SpecError, match=r":1: num_nodes: must be at least 1, got 0"):
        parse_spec("num_nodes: 0\nservice: {}\nrun: x\n")
