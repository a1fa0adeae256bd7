"""``resources.labels`` on GCP: VM labels (lowercased) beside skyctl's own, through
google-cloud-compute against the fake Compute Engine (which enforces GCP's label
rules). A label named like one of skyctl's is refused before any call: it used to
be dropped silently."""

from __future__ import annotations

from dataclasses import replace

import pytest

from providers.gcp import GCPProvider
from providers.gcp_build import split_instance_id
from skyctl.errors import ConfigError
from tests.fakes.gcp_server import FakeComputeEngine
from tests.test_gcp_provider import _request, _spec, clock, fake, provider

__all__ = ["clock", "fake", "provider"]


async def test_labels_are_set_beside_skyctls_own_and_listing_still_finds_the_vm(
    fake: FakeComputeEngine, provider: GCPProvider
) -> None:
    spec = _spec(labels={"Team": "ML", "cost_center": "4-2"})
    inst = await provider.launch(replace(_request(), spec=spec))
    body = fake.instance(*split_instance_id(inst.instance_id))
    assert body["labels"]["team"] == "ml" and body["labels"]["cost_center"] == "4-2"
    assert (body["labels"]["skyctl-service"], body["labels"]["skyctl-replica"]) == ("svc", "1")
    (listed,) = await provider.list_instances("svc")
    assert listed.instance_id == inst.instance_id
    await provider.terminate(inst.instance_id)
    assert await provider.list_instances("svc") == []


@pytest.mark.parametrize("name", ["skyctl-service", "Skyctl-Port", "skyctl_token"])
async def test_a_label_named_like_a_skyctl_label_is_refused_before_any_call(
    fake: FakeComputeEngine, provider: GCPProvider, name: str
) -> None:
    spec = _spec(labels={name: "other"})
    with pytest.raises(ConfigError, match=rf"resources.labels.{name}: .*reserved"):
        await provider.launch(replace(_request(), spec=spec))
    assert not [r for r in fake.requests if r[0] == "POST"]  # no VM, no firewall rule


async def test_a_label_gcp_refuses_is_a_config_error_naming_it_not_a_mangled_label(
    fake: FakeComputeEngine, provider: GCPProvider
) -> None:
    spec = _spec(labels={"team.name": "ml"})
    with pytest.raises(ConfigError, match=r"resources.labels.team.name: GCP labels allow"):
        await provider.launch(replace(_request(), spec=spec))
    assert fake.instances == {}
