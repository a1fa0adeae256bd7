"""Peer review of the Azure provider, through the SDK against the fake ARM.

ARM puts the reason of a failed provisioning in the instance view
(``ProvisioningState/failed/<code>`` with a message); the replica's state
detail carries it, so ``skyctl status`` shows more than "provisioning failed".
What stays until deleted (a stopped or deallocated on-demand VM, the NIC and IP
of a vanished one) is listed FAILED, never TERMINATED, which teardown skips.
"""

from __future__ import annotations

from providers.azure import AzureProvider
from providers.azure_resources import vm_state
from skyctl.types import InstanceState
from tests.fakes.azure_server import FakeAzure
from tests.test_azure_provider import clock, fake, leftovers, make_provider, provider, request

__all__ = ["clock", "fake", "make_provider", "provider"]


def test_a_failed_provisioning_keeps_arms_code_and_message_on_one_line() -> None:
    vm = {
        "properties": {
            "provisioningState": "Failed",
            "instanceView": {
                "statuses": [
                    {
                        "code": "ProvisioningState/failed/OSProvisioningTimedOut",
                        "level": "Error",
                        "displayStatus": "Provisioning failed",
                        "message": "OS Provisioning for VM 'vm1' did not finish\n"
                        "in the allotted time.",
                    },
                    {"code": "PowerState/running"},
                ]
            },
        }
    }
    state, detail = vm_state(vm, spot=True)
    assert state is InstanceState.FAILED
    assert detail.startswith("provisioning failed: OSProvisioningTimedOut: OS Provisioning")
    assert "\n" not in detail


def test_a_failed_provisioning_without_a_reason_still_says_failed() -> None:
    vm = {"properties": {"provisioningState": "Failed", "instanceView": {"statuses": []}}}
    assert vm_state(vm, spot=False) == (InstanceState.FAILED, "provisioning failed")


async def test_a_stopped_ondemand_vm_is_failed_until_terminate_deletes_it(
    provider: AzureProvider, fake: FakeAzure
) -> None:
    """Stopped (not deallocated) it is still billed; deallocated its disk is: either
    way it stays until deleted, so it is not listed TERMINATED (teardown skips those)."""
    inst = await provider.launch(request(spot=False))
    vm = fake.state.find("virtualMachines", inst.instance_id)
    assert vm is not None
    vm["properties"]["instanceView"]["statuses"] = [
        {"code": "ProvisioningState/succeeded"},
        {"code": "PowerState/stopped"},
    ]
    [listed] = await provider.list_instances("svc")
    assert listed.state is InstanceState.FAILED
    assert listed.detail == "stopped (power state stopped)"
    await provider.terminate(inst.instance_id)
    assert leftovers(fake) == {}


async def test_network_resources_left_by_a_vanished_ondemand_vm_are_not_called_gone(
    provider: AzureProvider, fake: FakeAzure
) -> None:
    inst = await provider.launch(request(spot=False))
    vm = fake.state.find("virtualMachines", inst.instance_id)
    assert vm is not None
    fake.state.resources.pop(vm["id"].lower())  # deleted behind skyctl's back, its NIC kept
    for res in fake.state.resources.values():
        if res["type"].endswith("networkInterfaces"):
            res["properties"]["virtualMachine"] = None
    [listed] = await provider.list_instances("svc")
    assert listed.state is InstanceState.FAILED
    await provider.terminate(inst.instance_id)
    assert leftovers(fake) == {}


def test_a_vm_being_deleted_is_terminated_whatever_its_power_state_on_the_way() -> None:
    for power in ("stopping", "stopped", "deallocating"):
        vm = {
            "properties": {
                "provisioningState": "Deleting",
                "instanceView": {"statuses": [{"code": f"PowerState/{power}"}]},
            }
        }
        assert vm_state(vm, spot=False) == (InstanceState.TERMINATED, "being deleted")
