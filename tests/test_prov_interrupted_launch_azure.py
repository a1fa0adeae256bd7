"""Azure: a launch cut after the replica's public IP and NIC were created but
before its VM (the controller killed between the calls). The next controller's
provider lists the leftovers as the replica (not serving), the controller
launches it again with the same client token (its record is still PENDING), and
that reuses the network resources: one VM, one NIC, one IP, nothing left after
teardown. Through the Azure SDK against the fake ARM server."""

from __future__ import annotations

from collections.abc import Callable

from providers.azure import AzureProvider
from skyctl.types import InstanceState
from tests.fakes.azure_server import FakeAzure
from tests.test_azure_provider import clock, fake, leftovers, make_provider, request

__all__ = ["clock", "fake", "make_provider"]


async def test_a_launch_cut_before_its_vm_is_listed_relaunched_once_and_cleaned_up(
    make_provider: Callable[..., AzureProvider], fake: FakeAzure
) -> None:
    first = make_provider()
    inst = await first.launch(request(token="tok-cut"))
    fake.state.delete("skyctl", "Microsoft.Compute", "virtualMachines", inst.instance_id)
    fake.state.settle()  # as if the VM was never created: its IP and NIC are left
    assert fake.state.names("virtualMachines") == []
    second = make_provider()  # the next controller's provider: nothing in memory
    [listed] = await second.list_instances("svc")
    assert listed.instance_id == inst.instance_id and listed.replica_id == 1
    assert listed.state not in (InstanceState.PENDING, InstanceState.RUNNING)  # not adopted
    again = await second.launch(request(token="tok-cut"))  # the record's token
    assert again.instance_id == inst.instance_id and again.state is InstanceState.RUNNING
    assert fake.state.names("virtualMachines") == [inst.instance_id]
    assert fake.state.names("networkInterfaces") == [f"{inst.instance_id}-nic"]
    assert fake.state.names("publicIPAddresses") == [f"{inst.instance_id}-ip"]
    await second.terminate(inst.instance_id)
    assert leftovers(fake) == {}


async def test_network_resources_of_a_cut_launch_no_record_claims_are_removed_as_an_orphan(
    make_provider: Callable[..., AzureProvider], fake: FakeAzure
) -> None:
    first = make_provider()
    inst = await first.launch(request(token="tok-orphan"))
    fake.state.delete("skyctl", "Microsoft.Compute", "virtualMachines", inst.instance_id)
    fake.state.settle()
    second = make_provider()
    [listed] = await second.list_instances("svc")
    await second.terminate(listed.instance_id)  # what the controller does with an orphan
    assert leftovers(fake) == {}
    assert await second.list_instances("svc") == []
