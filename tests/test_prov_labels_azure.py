"""``resources.labels`` on Azure: tags on the VM, its NIC and public IP beside
skyctl's own, through the Azure SDK against the fake ARM server (which enforces
Azure's tag rules). Azure compares tag names ignoring case, so a label named like
one of skyctl's tags in any case is refused before any call."""

from __future__ import annotations

import pytest

from providers.azure import AzureProvider
from skyctl.errors import ConfigError
from tests.fakes.azure_server import FakeAzure
from tests.test_azure_provider import clock, fake, leftovers, make_provider, provider, request, spec

__all__ = ["clock", "fake", "make_provider", "provider"]


async def test_labels_tag_every_resource_of_the_replica_and_teardown_still_finds_it(
    provider: AzureProvider, fake: FakeAzure
) -> None:
    labelled = spec(labels={"Team": "ML Platform", "cost center": "42"})
    inst = await provider.launch(request(the_spec=labelled))
    for kind, name in [
        ("virtualMachines", inst.instance_id),
        ("networkInterfaces", f"{inst.instance_id}-nic"),
        ("publicIPAddresses", f"{inst.instance_id}-ip"),
    ]:
        res = fake.state.find(kind, name)
        assert res is not None, kind
        assert res["tags"]["Team"] == "ML Platform" and res["tags"]["cost center"] == "42"
        assert res["tags"]["skyctl-service"] == "svc" and res["tags"]["skyctl-replica"] == "1"
    (listed,) = await provider.list_instances("svc")
    assert listed.instance_id == inst.instance_id
    await provider.terminate(inst.instance_id)
    assert leftovers(fake) == {}


@pytest.mark.parametrize("name", ["skyctl-service", "SKYCTL-INSTANCE", "skyctl-spot"])
async def test_a_label_named_like_a_skyctl_tag_in_any_case_is_refused_before_any_call(
    provider: AzureProvider, fake: FakeAzure, name: str
) -> None:
    with pytest.raises(ConfigError, match=rf"resources.labels.{name}: .*reserved"):
        await provider.launch(request(the_spec=spec(labels={name: "other"})))
    assert fake.calls("PUT") == 0
