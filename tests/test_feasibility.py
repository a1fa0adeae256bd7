"""Placement realism: a spec runs only where a provider offers what it asks.

The local provider offers this machine (CPUs, memory) and the accelerators
``local.accelerators`` in config.yaml lists; clouds offer their catalog's
instance types; a spec no provider can run is refused before it is submitted,
in one line naming what was asked and what is offered (as SkyPilot's optimizer).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.feasibility import (
    Machine,
    check_placement,
    fits_machine,
    local_accelerators,
)
from providers.local import LocalProvider
from skyctl.clock import FakeClock
from skyctl.errors import ConfigError, SpecError
from skyctl.spec import ResourceCandidate, ServiceSpec
from skyctl.spec_yaml import parse_spec

LAPTOP = Machine(cpus=8, memory_gb=16, accelerators={})
GPU_BOX = Machine(cpus=32, memory_gb=256, accelerators={"L4": 4})


def spec(resources: str) -> ServiceSpec:
    return parse_spec(f"resources:\n{resources}\nservice: {{}}\nrun: serve\n", "s.yaml")


def test_the_machine_fits_what_it_has_and_no_more() -> None:
    assert fits_machine(ResourceCandidate(cpus="4+", memory="8"), LAPTOP)  # minimums here
    assert not fits_machine(ResourceCandidate(cpus="16+"), LAPTOP)
    assert not fits_machine(ResourceCandidate(memory="32GB+"), LAPTOP)
    assert fits_machine(ResourceCandidate(memory="512MB"), LAPTOP)
    assert not fits_machine(ResourceCandidate(accelerators={"L4": 1}), LAPTOP)
    assert fits_machine(ResourceCandidate(accelerators={"l4": 4}), GPU_BOX)  # any case
    assert not fits_machine(ResourceCandidate(accelerators={"L4": 8}), GPU_BOX)
    assert fits_machine(ResourceCandidate(accelerators={"L4": 0.5}), GPU_BOX)


def test_a_gpu_spec_naming_no_cloud_is_refused_in_one_line_on_a_laptop() -> None:
    with pytest.raises(SpecError) as err:
        check_placement(spec("  accelerators: A100:8\n  cpus: 8+"), {}, LAPTOP)
    assert str(err.value) == (
        "s.yaml: resources: no enabled provider can run this spec: asked for A100:8 with 8+ "
        "CPUs; local offers 8 CPUs, 16.0 GB memory, no accelerators (list them under "
        "local.accelerators in config.yaml); a spec naming no cloud runs on local: set "
        "resources.infra to use a cloud"
    )
    check_placement(spec("  accelerators: L4:2"), {}, GPU_BOX)


def test_clouds_offer_their_catalog_and_kubernetes_decides_at_launch() -> None:
    check_placement(spec("  infra: aws\n  accelerators: A100:8"), {}, LAPTOP)
    with pytest.raises(SpecError, match=r"asked for T4:0.5 on aws; aws offers A100:8, .*T4:1, "):
        check_placement(spec("  infra: aws\n  accelerators: T4:0.5"), {}, LAPTOP)
    check_placement(spec("  infra: k8s\n  accelerators: H100:8"), {}, LAPTOP)
    # one alternative that fits is enough
    check_placement(
        spec("  any_of:\n    - accelerators: A100:8\n    - infra: gcp\n      accelerators: L4:1"),
        {},
        LAPTOP,
    )


def test_clouds_skyctl_does_not_run_on_are_named_as_such() -> None:
    with pytest.raises(SpecError) as err:
        check_placement(spec("  infra: lambda\n  accelerators: A100:1"), {}, LAPTOP)
    message = str(err.value)
    assert message.endswith(
        "skyctl does not run on lambda; it runs on: local, aws, gcp, azure, kubernetes"
    )
    assert "did you mean" not in message
    check_placement(spec("  any_of:\n    - infra: lambda\n    - infra: aws"), {}, LAPTOP)


def test_local_accelerators_in_config_take_three_forms() -> None:
    assert local_accelerators({"accelerators": {"L4": 2}}) == {"L4": 2.0}
    assert local_accelerators({"accelerators": "T4:1"}) == {"T4": 1.0}
    assert local_accelerators({"accelerators": ["A10G", "L4:2"]}) == {"A10G": 1.0, "L4": 2.0}
    assert local_accelerators(None) == {}
    with pytest.raises(ConfigError, match=r"local\.accelerators: expected NAME: COUNT"):
        local_accelerators({"accelerators": {"L4": "many"}})


async def test_the_local_provider_offers_nothing_a_gpu_spec_could_not_use(tmp_path: Path) -> None:
    gpu = parse_spec("resources: {accelerators: L4:1}\nservice: {}\nrun: serve\n")
    cpu = parse_spec("service: {}\nrun: serve\n")
    bare = LocalProvider(None, clock=FakeClock(0.0), state_dir=tmp_path / "a")
    with_gpu = LocalProvider(
        None, clock=FakeClock(0.0), state_dir=tmp_path / "b", accelerators={"L4": 1}
    )
    try:
        assert await bare.offerings(gpu) == []
        assert await bare.offerings(cpu)
        offered = await with_gpu.offerings(gpu)
        assert offered and all(o.accelerators == "L4:1" for o in offered)
    finally:
        await bare.close()
        await with_gpu.close()


def test_a_cloud_candidate_that_fits_nothing_says_what_the_region_offers() -> None:
    with pytest.raises(SpecError) as err:
        check_placement(spec("  infra: gcp/us-central1\n  accelerators: H200:8"), {}, LAPTOP)
    message = str(err.value)
    assert "asked for H200:8 on gcp/us-central1; gcp offers in us-central1 A100-80GB:1" in message
    assert " and up to " in message and message.endswith(" GB (its catalog)")
    with pytest.raises(SpecError, match="azure has no region 'nowhere' in its catalog"):
        check_placement(spec("  infra: azure/nowhere"), {}, LAPTOP)
