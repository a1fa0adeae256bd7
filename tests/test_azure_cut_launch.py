"""A spot launch on Azure cut short is a failed launch, never a preemption.

Through the real Azure SDK against the fake ARM server: a launch is cut (its task
cancelled, as the controller's deadline does, or the controller killed: a fresh
provider then lists) at each of its steps: the NIC created but no VM yet, the VM
PUT accepted but not succeeded, the VM's provisioning Failed. What is left is
listed FAILED with ``launch_failed`` and a reason, no PREEMPTED event is
emitted, a cancelled launch deletes what it created, and ``terminate`` removes
what a killed one left. A real eviction (the VM deleted with its NIC, the
public IP left; or the VM deallocated) stays PREEMPTED.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest

from providers.azure import AzureProvider
from skyctl.errors import CapacityError
from skyctl.types import Instance, InstanceEvent, InstanceState
from tests.fakes.azure_server import FakeAzure
from tests.test_azure_provider import clock, fake, leftovers, make_provider, provider, request

__all__ = ["clock", "fake", "make_provider", "provider"]

#: step -> the request held (never answered) to cut the launch there
STEPS = {
    "nic created, no VM": ("PUT", "/virtualmachines/"),
    "VM PUT accepted, not succeeded": ("GET", "/microsoft.compute/locations/"),
    "VM provisioning failed": ("GET", "/microsoft.compute/locations/"),
}


async def _cut(
    provider: AzureProvider, fake: FakeAzure, step: str, *, kill: bool = False
) -> asyncio.Task[Instance]:
    """Start a spot launch and cut it at ``step``: cancelled, or (``kill``) left
    hanging there for good, as a killed controller's (cancel it after the test)."""
    if step == "VM provisioning failed":
        fake.state.fail_allocation("eastus", "1")
    hold = fake.hold(*STEPS[step])
    task = asyncio.create_task(provider.launch(request()))
    await hold.reached.wait()
    if step == "VM provisioning failed":
        fake.state.settle()  # ARM finishes the operation: the VM is Failed
    if not kill:
        await _cancel(task)
    return task


async def _cancel(task: asyncio.Task[Instance]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _events(provider: AzureProvider) -> list[InstanceEvent]:
    events: list[InstanceEvent] = []
    provider.set_event_sink(events.append)
    return events


def _assert_failed_launch(listed: list[Instance], events: list[InstanceEvent]) -> None:
    assert [i.state for i in listed] == [InstanceState.FAILED], listed
    assert listed[0].launch_failed and listed[0].detail, listed[0]
    assert events == []


@pytest.mark.parametrize("step", ["nic created, no VM", "VM provisioning failed"])
async def test_a_launch_cut_by_a_killed_controller_is_listed_as_a_failed_launch_then_removed(
    make_provider: Callable[..., AzureProvider], fake: FakeAzure, step: str
) -> None:
    killed = await _cut(make_provider(), fake, step, kill=True)
    fake.state.settle()  # whatever ARM was doing finishes
    fresh = make_provider()  # the next controller
    events = _events(fresh)
    listed = list(await fresh.list_instances("svc"))
    _assert_failed_launch(listed, events)
    await fresh.terminate(listed[0].instance_id)
    assert leftovers(fake) == {}
    await _cancel(killed)


async def test_a_vm_accepted_before_the_controller_was_killed_is_pending_then_running(
    make_provider: Callable[..., AzureProvider], fake: FakeAzure
) -> None:
    """The next controller adopts it (a PENDING or RUNNING instance), as on AWS and GCP."""
    killed = await _cut(make_provider(), fake, "VM PUT accepted, not succeeded", kill=True)
    fresh = make_provider()
    events = _events(fresh)
    assert [i.state for i in await fresh.list_instances("svc")] == [InstanceState.PENDING]
    fake.state.settle()
    assert [i.state for i in await fresh.list_instances("svc")] == [InstanceState.RUNNING]
    assert events == []
    await _cancel(killed)


@pytest.mark.parametrize("step", list(STEPS))
async def test_a_cancelled_launch_deletes_what_it_created(
    provider: AzureProvider, fake: FakeAzure, step: str
) -> None:
    events = _events(provider)
    await _cut(provider, fake, step)
    fake.state.settle()
    assert leftovers(fake) == {}
    assert await provider.list_instances("svc") == []
    assert events == []


async def test_a_failed_launch_being_cleaned_up_is_not_listed_as_an_eviction(
    provider: AzureProvider, fake: FakeAzure
) -> None:
    fake.state.fail_allocation("eastus", "1")
    hold = fake.hold("GET", "/microsoft.compute/locations/", skip=1)  # the VM delete's poll
    events = _events(provider)
    task = asyncio.create_task(provider.launch(request()))
    await hold.reached.wait()  # the failed VM is being deleted by the launch's cleanup
    (listed,) = await provider.list_instances("svc")
    assert listed.state is not InstanceState.PREEMPTED and events == []
    hold.release.set()
    with pytest.raises(CapacityError):
        await task
    fake.state.settle()
    assert await provider.list_instances("svc") == []


@pytest.mark.parametrize("how", ["deleted", "deallocated", "VM gone, NIC going"])
async def test_a_real_eviction_is_still_a_preemption(
    provider: AzureProvider, fake: FakeAzure, how: str
) -> None:
    inst = await provider.launch(request())
    events = _events(provider)
    if how == "VM gone, NIC going":  # a listing between the VM's and its NIC's deletion
        vm = fake.state.find("virtualMachines", inst.instance_id)
        assert vm is not None
        fake.state.resources.pop(vm["id"].lower())  # the NIC still names its VM
    else:
        fake.state.evict(inst.instance_id, deallocate=how == "deallocated")
    (listed,) = await provider.list_instances("svc")
    assert listed.state is InstanceState.PREEMPTED and not listed.launch_failed
    assert [e.instance_id for e in events] == [inst.instance_id]
    if how == "VM gone, NIC going":  # ARM is done with the VM: the NIC is free
        nic = fake.state.find("networkInterfaces", f"{inst.instance_id}-nic")
        assert nic is not None
        nic["properties"]["virtualMachine"] = None
    await provider.terminate(inst.instance_id)
    assert leftovers(fake) == {}
