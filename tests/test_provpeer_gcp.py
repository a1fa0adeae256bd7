"""Peer review of the GCP provider, through google-cloud-compute against the fake.

An on-demand VM stopped outside skyctl (GCP status TERMINATED: by someone, or by
host maintenance of a GPU VM) still exists and costs its disks until deleted: it
is listed FAILED with a reason, not TERMINATED (which teardown and the purge
sweep take for "already going away" and skip).
"""

from __future__ import annotations

from providers.gcp import GCPProvider
from providers.gcp_build import split_instance_id
from skyctl.types import InstanceState
from tests.fakes.gcp_server import FakeComputeEngine
from tests.test_gcp_provider import _request, clock, fake, provider

__all__ = ["clock", "fake", "provider"]


async def test_a_stopped_ondemand_vm_is_failed_until_deleted(
    fake: FakeComputeEngine, provider: GCPProvider
) -> None:
    inst = await provider.launch(_request(spot=False))
    fake.instances[split_instance_id(inst.instance_id)]["status"] = "TERMINATED"
    [listed] = await provider.list_instances("svc")
    assert listed.state is InstanceState.FAILED
    assert listed.detail == "stopped (GCP status TERMINATED)"
    assert listed.endpoint is None
    await provider.terminate(inst.instance_id)
    assert fake.instances == {}
