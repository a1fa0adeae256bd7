"""skyctl.teardown: what the providers list, never what the store remembers.

A provider that cannot be asked is reported unchecked (never counted as empty);
an instance whose termination fails is reported left; everything else is
terminated and listed again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from providers.base import LaunchRequest, Provider
from providers.registry import ProviderSet
from skyctl import teardown
from skyctl.clock import FakeClock
from skyctl.config import paths
from skyctl.errors import ConfigError, TransientError
from skyctl.spec import ServiceSpec
from skyctl.types import Instance, InstanceState, Location, Offering


class Tagged(Provider):
    """Instances known only by their tags; some refuse to terminate."""

    def __init__(self, name: str, instances: dict[str, str], stuck: Sequence[str] = ()) -> None:
        self.name = name
        self.instances = dict(instances)  # instance id -> service
        self.stuck = set(stuck)
        self.released: list[str] = []

    async def offerings(self, spec: ServiceSpec) -> Sequence[Offering]:
        return []

    async def launch(self, request: LaunchRequest) -> Instance:
        raise NotImplementedError

    async def terminate(self, instance_id: str) -> None:
        if instance_id in self.stuck:
            raise TransientError("throttled")
        self.instances.pop(instance_id, None)

    async def list_instances(self, service: str) -> Sequence[Instance]:
        loc = Location(self.name, "r", "z")
        return [
            Instance(iid, s, i, 1, loc, False, InstanceState.RUNNING)
            for i, (iid, s) in enumerate(sorted(self.instances.items()))
            if s == service
        ]

    async def list_services(self) -> Sequence[str]:
        return sorted(set(self.instances.values()))

    async def release_service(self, service: str) -> None:
        self.released.append(service)


class Unreachable(Tagged):
    async def list_services(self) -> Sequence[str]:
        raise ConfigError("aws: no credentials found")

    async def list_instances(self, service: str) -> Sequence[Instance]:
        raise ConfigError("aws: no credentials found")


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Tagged, Unreachable]:
    gcp = Tagged("gcp", {"g-1": "a", "g-2": "a", "g-3": "b"}, stuck=["g-3"])
    aws = Unreachable("aws", {})

    def providers(_: object, **__: object) -> ProviderSet:
        made = ProviderSet(config={}, clock=FakeClock(), local_state=tmp_path / "local")
        made.add(gcp)
        made.add(aws)
        return made

    monkeypatch.setattr(teardown, "_providers", providers)
    return gcp, aws


def test_sweep_terminates_what_it_can_and_reports_the_rest(
    fakes: tuple[Tagged, Unreachable], tmp_path: Path
) -> None:
    gcp, _ = fakes
    result = teardown.sweep(paths(str(tmp_path)), ["gcp", "aws"])
    assert result.terminated == {"gcp": {"a": ["g-1", "g-2"]}}
    assert result.left == {"gcp": {"b": ["g-3"]}}
    assert result.unchecked == {"aws": "aws: no credentials found"}
    assert result.checked == ["gcp"]
    assert not result.clean
    assert gcp.instances == {"g-3": "b"}


def test_a_provider_that_cannot_be_asked_is_never_counted_as_empty(
    fakes: tuple[Tagged, Unreachable], tmp_path: Path
) -> None:
    left, unchecked = teardown.leftovers(paths(str(tmp_path)), {"b": ["gcp", "aws"], "z": ["gcp"]})
    assert left == {"b": ["gcp:g-3"]}
    assert unchecked == {"aws": "aws: no credentials found"}


def test_the_clouds_swept_are_local_the_configured_ones_and_those_named(tmp_path: Path) -> None:
    p = paths(str(tmp_path))
    (tmp_path / "config.yaml").write_text("aws:\n  regions: [us-east-1]\n")
    assert teardown.configured_clouds(p, ["k8s"]) == ["aws", "kubernetes", "local"]
