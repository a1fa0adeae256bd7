"""Multi-node replicas on Azure (``num_nodes: N``), through the real Azure SDK against the
fake ARM server.

One replica is N VMs in one zone, each with its NIC and public IP, tagged with
the replica, its rank and the head's name; every NIC (so every private address)
exists before any VM, so each VM boots with its rank and the node list in its
custom data; the controller sees one instance (the head's id and endpoint); the
loss of any node is the replica's; terminating the replica deletes every node;
a node that cannot be allocated fails the launch and leaves nothing behind; a
fresh provider (a controller restart) groups the same VMs into the replica.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from providers.azure import AzureProvider
from providers.azure_resources import Names
from providers.base import LaunchRequest
from skyctl.errors import CapacityError
from skyctl.types import InstanceEvent, InstanceEventKind, InstanceState
from tests.fakes.azure_server import FakeAzure
from tests.test_azure_provider import (
    clock,
    fake,
    leftovers,
    make_provider,
    provider,
    request,
    spec,
)

__all__ = ["clock", "fake", "make_provider", "provider"]


def multi(n: int, **kw: Any) -> LaunchRequest:
    req = request(**kw)
    return dataclasses.replace(req, spec=dataclasses.replace(req.spec, num_nodes=n))


def node_names(head: str, n: int) -> list[str]:
    return [head] + [f"{head}-n{k}" for k in range(1, n)]


def script_of(fake: FakeAzure, name: str) -> str:
    vm = fake.state.find("virtualMachines", name)
    assert vm is not None, name
    return base64.b64decode(fake.state.custom_data[vm["id"].lower()]).decode()


def run_bash(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", script + '\nprintf "%s|%s" "$SKYPILOT_NODE_RANK" "$SKYPILOT_NODE_IPS"'],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=30,
    )


def private_ip(fake: FakeAzure, name: str) -> str:
    nic = fake.state.find("networkInterfaces", f"{name}-nic")
    assert nic is not None
    return str(nic["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"])


async def test_n_nodes_are_n_vms_in_one_zone_that_boot_with_rank_and_node_list(
    provider: AzureProvider, fake: FakeAzure
) -> None:
    req = multi(3)
    inst = await provider.launch(req)
    names = node_names(inst.instance_id, 3)
    assert sorted(fake.state.names("virtualMachines")) == sorted(names)
    assert inst.state is InstanceState.RUNNING and inst.endpoint
    ips = [private_ip(fake, name) for name in names]
    assert len(set(ips)) == 3
    for rank, name in enumerate(names):
        vm = fake.state.find("virtualMachines", name)
        assert vm is not None and vm["zones"] == ["1"]
        for kind, res_name in [
            ("virtualMachines", name),
            ("networkInterfaces", f"{name}-nic"),
            ("publicIPAddresses", f"{name}-ip"),
        ]:
            res = fake.state.find(kind, res_name)
            assert res is not None
            tags = res["tags"]
            assert (tags["skyctl-service"], tags["skyctl-replica"]) == ("svc", "1")
            assert (tags["skyctl-nodes"], tags["skyctl-node-rank"]) == ("3", str(rank))
            assert tags["skyctl-head"] == inst.instance_id
        script = script_of(fake, name)
        assert "export SKYPILOT_NUM_NODES=3" in script
        assert f"ips='{' '.join(ips)}'" in script  # the head's address first
        # run the node part of the boot script: what setup and run will see
        part = script[script.index("ips='") :].split("\nSKYCTL_WORK=")[0]
        done = await asyncio.to_thread(run_bash, part)
        assert done.stdout == f"{rank}|" + "\n".join(ips), done.stderr
    (listed,) = await provider.list_instances("svc")  # one replica, not three
    assert listed.instance_id == inst.instance_id and listed.endpoint == inst.endpoint
    assert listed.state is InstanceState.RUNNING

    again = await provider.launch(req)  # a retried launch: the same replica
    assert again.instance_id == inst.instance_id
    assert len(fake.state.names("virtualMachines")) == 3


async def test_offerings_price_a_replica_as_its_n_vms(provider: AzureProvider) -> None:
    one = await provider.offerings(spec())
    four = await provider.offerings(dataclasses.replace(spec(), num_nodes=4))
    assert one and [o.price for o in four] == pytest.approx([4 * o.price for o in one])


async def test_an_evicted_worker_preempts_the_replica_and_terminate_leaves_nothing(
    provider: AzureProvider, fake: FakeAzure
) -> None:
    events: list[InstanceEvent] = []
    provider.set_event_sink(events.append)
    inst = await provider.launch(multi(2))
    fake.state.evict(f"{inst.instance_id}-n1")
    (listed,) = await provider.list_instances("svc")
    assert listed.instance_id == inst.instance_id
    assert listed.state is InstanceState.PREEMPTED and listed.endpoint is None
    assert "node 1 of 2 preempted" in listed.detail
    await provider.list_instances("svc")
    assert [(e.kind, e.instance_id) for e in events] == [
        (InstanceEventKind.PREEMPTED, inst.instance_id)
    ]
    await provider.terminate(inst.instance_id)
    assert leftovers(fake) == {}
    assert await provider.list_instances("svc") == []


async def test_a_worker_deleted_otherwise_fails_the_replica(
    provider: AzureProvider, fake: FakeAzure
) -> None:
    inst = await provider.launch(multi(3, spot=False))
    fake.state.evict(f"{inst.instance_id}-n2")  # the VM is gone, its NIC and IP are left
    (listed,) = await provider.list_instances("svc")
    assert listed.state is InstanceState.FAILED and "node 2 of 3 ended" in listed.detail
    await provider.terminate(inst.instance_id)
    assert leftovers(fake) == {}


async def test_a_node_that_cannot_be_allocated_fails_the_launch_and_leaves_nothing(
    provider: AzureProvider, fake: FakeAzure
) -> None:
    req = multi(3)
    name = Names.for_launch("svc", 1, req.client_token).vm
    fake.state.fail_allocation_of(f"{name}-n2")
    with pytest.raises(CapacityError) as err:
        await provider.launch(req)
    assert err.value.location == "azure/eastus/1"
    assert leftovers(fake) == {}
    assert await provider.list_instances("svc") == []


async def test_a_restarted_controller_groups_the_vms_into_the_replica_and_ends_it(
    make_provider: Callable[..., AzureProvider], fake: FakeAzure
) -> None:
    inst = await make_provider().launch(multi(2))
    fresh = make_provider()  # knows nothing of the launch
    (listed,) = await fresh.list_instances("svc")
    assert listed.instance_id == inst.instance_id and listed.replica_id == 1
    assert listed.state is InstanceState.RUNNING and listed.endpoint == inst.endpoint
    await make_provider().terminate(inst.instance_id)  # another fresh one ends it
    assert leftovers(fake) == {}


async def test_a_head_already_gone_still_takes_its_workers_with_it(
    provider: AzureProvider, fake: FakeAzure
) -> None:
    inst = await provider.launch(multi(2))
    for kind, name in [
        ("vm", inst.instance_id),
        ("nic", f"{inst.instance_id}-nic"),
        ("ip", f"{inst.instance_id}-ip"),
    ]:
        await provider.arm.delete(kind, name)  # someone removed the head entirely
    (listed,) = await provider.list_instances("svc")
    assert listed.instance_id == inst.instance_id and listed.state is InstanceState.FAILED
    assert "node 0 of 2 is gone" in listed.detail
    await provider.terminate(inst.instance_id)
    assert leftovers(fake) == {}


async def test_one_node_replicas_are_unchanged(provider: AzureProvider, fake: FakeAzure) -> None:
    inst = await provider.launch(request())
    vm = fake.state.find("virtualMachines", inst.instance_id)
    assert vm is not None and "skyctl-nodes" not in vm["tags"]
    assert "SKYPILOT_NODE_RANK=0 SKYPILOT_SETUP" not in script_of(fake, inst.instance_id)
