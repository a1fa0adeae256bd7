"""Peer review of the Azure provider: a VM whose provisioning failed says why.

ARM puts the reason of a failed provisioning in the instance view
(``ProvisioningState/failed/<code>`` with a message); the replica's state
detail carries it, so ``skyctl status`` shows more than "provisioning failed".
"""

from __future__ import annotations

from providers.azure_resources import vm_state
from skyctl.types import InstanceState


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
