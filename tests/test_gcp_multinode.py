"""Multi-node replicas on GCP (``num_nodes: N``), through google-cloud-compute over HTTP
against the fake Compute Engine API.

One replica is N VMs in one zone, labelled with the replica, their rank and the
head's name; once every VM exists each gets the node list (internal addresses,
head first) in its metadata, which its boot script waits for; the controller
sees one instance (the head's id and endpoint); the loss of any node is the
replica's; terminating the replica deletes every node; a launch refused for one
node leaves no VM behind; a fresh provider (a controller restart) groups the
same VMs into the same replica.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

from providers.base import LaunchRequest
from providers.gcp import GCPProvider
from providers.gcp_build import instance_name
from providers.gcp_nodes import node_script
from skyctl.clock import FakeClock
from skyctl.errors import CapacityError, ConfigError
from skyctl.types import InstanceEvent, InstanceEventKind, InstanceState
from tests.fakes.gcp_server import FakeComputeEngine
from tests.test_gcp_provider import (
    ZONE,
    _config,
    _request,
    _spec,
    _with_clock,
    clock,
    events,
    fake,
    provider,
)

__all__ = ["clock", "events", "fake", "provider"]


def multi(n: int, **kw: Any) -> LaunchRequest:
    req = _request(**kw)
    return replace(req, spec=replace(req.spec, num_nodes=n))


def nodes(fake: FakeComputeEngine) -> list[dict[str, Any]]:
    """The fake's VMs, ordered by rank."""
    return sorted(
        fake.instances.values(), key=lambda i: int(i["labels"].get("skyctl-node-rank", "0"))
    )


def meta(inst: dict[str, Any]) -> dict[str, str]:
    return {i["key"]: i["value"] for i in inst["metadata"]["items"]}


async def test_n_nodes_are_n_vms_in_one_zone_labelled_with_rank_and_the_node_list(
    fake: FakeComputeEngine, provider: GCPProvider
) -> None:
    req = multi(3)
    inst = await provider.launch(req)
    vms = nodes(fake)
    assert len(vms) == 3
    assert {v["zone"].rsplit("/", 1)[-1] for v in vms} == {ZONE}
    head = vms[0]["name"]
    assert inst.instance_id == f"{ZONE}/{head}"  # the replica is its head
    assert inst.endpoint and inst.endpoint.startswith("http://203.0.113.")
    ips = " ".join(v["networkInterfaces"][0]["networkIP"] for v in vms)
    for rank, vm in enumerate(vms):
        labels = vm["labels"]
        assert (labels["skyctl-service"], labels["skyctl-replica"]) == ("svc", "1")
        assert (labels["skyctl-nodes"], labels["skyctl-node-rank"]) == ("3", str(rank))
        assert labels["skyctl-head"] == head
        assert vm["name"] == (head if rank == 0 else f"{head}-n{rank}")
        script = meta(vm)["startup-script"]
        assert "export SKYPILOT_NUM_NODES=3" in script
        assert f"export SKYPILOT_NODE_RANK={rank} SKYPILOT_SETUP_NODE_RANK={rank}" in script
        assert meta(vm)["skyctl-node-ips"] == ips  # the head's address first
    (listed,) = await provider.list_instances("svc")  # one replica, not three
    assert listed.instance_id == inst.instance_id and listed.state is InstanceState.RUNNING
    assert listed.endpoint == inst.endpoint

    again = await provider.launch(req)  # a retried launch: the same replica
    assert again.instance_id == inst.instance_id and len(fake.instances) == 3


async def test_offerings_price_a_replica_as_its_n_vms(provider: GCPProvider) -> None:
    one = await provider.offerings(_spec())
    four = await provider.offerings(replace(_spec(), num_nodes=4))
    assert one and [o.price for o in four] == [4 * o.price for o in one]


async def test_the_nodes_reach_each_other_on_any_port_the_world_only_the_service_port(
    fake: FakeComputeEngine, provider: GCPProvider
) -> None:
    await provider.launch(multi(2))
    rules = sorted(fake.firewalls.values(), key=lambda r: r["name"])
    assert [r["allowed"] for r in rules] == [
        [{"IPProtocol": "tcp", "ports": ["8080"]}],
        [{"IPProtocol": "all"}],
    ]
    assert rules[1]["sourceTags"] == rules[1]["targetTags"] and "sourceRanges" not in rules[1]


async def test_a_preempted_worker_preempts_the_replica_and_terminate_leaves_nothing(
    fake: FakeComputeEngine, provider: GCPProvider, events: list[InstanceEvent]
) -> None:
    inst = await provider.launch(multi(2))
    await provider.list_instances("svc")
    worker = nodes(fake)[1]["name"]
    fake.preempt(ZONE, worker)  # deleted, as instanceTerminationAction: DELETE does
    (listed,) = await provider.list_instances("svc")
    assert listed.instance_id == inst.instance_id
    assert listed.state is InstanceState.PREEMPTED and listed.endpoint is None
    assert "node 1 of 2 preempted" in listed.detail
    assert [(e.kind, e.instance_id) for e in events] == [
        (InstanceEventKind.PREEMPTED, inst.instance_id)
    ]
    await provider.terminate(inst.instance_id)
    await provider.list_instances("svc")
    assert fake.instances == {}  # nothing leaked
    assert await provider.list_instances("svc") == []
    assert fake.firewalls == {}


async def test_a_worker_deleted_otherwise_fails_the_replica(
    fake: FakeComputeEngine, provider: GCPProvider
) -> None:
    inst = await provider.launch(multi(3, spot=False))
    del fake.instances[(ZONE, nodes(fake)[2]["name"])]  # someone deleted a worker
    (listed,) = await provider.list_instances("svc")
    assert listed.state is InstanceState.FAILED and "node 2 of 3 is gone" in listed.detail
    await provider.terminate(inst.instance_id)
    await provider.list_instances("svc")
    assert fake.instances == {}


async def test_a_launch_refused_for_one_node_is_rolled_back_with_no_vm_left(
    fake: FakeComputeEngine, provider: GCPProvider, clock: FakeClock
) -> None:
    req = multi(3)
    head = instance_name("svc", 1, req.client_token)
    fake.refuse(f"{head}-n2")
    try:
        await _with_clock(clock, provider.launch(req))
    except CapacityError as e:
        assert "ZONE_RESOURCE_POOL_EXHAUSTED" in str(e) and ZONE in str(e)
    else:
        raise AssertionError("a refused node must fail the launch")
    await provider.list_instances("svc")  # the fake finishes deletions on the next read
    assert fake.instances == {}
    assert await provider.list_instances("svc") == []


async def test_a_node_list_that_cannot_be_written_rolls_the_launch_back(
    fake: FakeComputeEngine, provider: GCPProvider, clock: FakeClock
) -> None:
    fake.fail_next(1, status=403, path_contains="/setMetadata")
    try:
        await _with_clock(clock, provider.launch(multi(2)))
    except ConfigError as e:
        assert "set the node list" in str(e)
    else:
        raise AssertionError("a node list not written must fail the launch")
    await provider.list_instances("svc")
    assert fake.instances == {}


async def test_a_restarted_controller_groups_the_same_vms_into_the_replica_and_ends_it(
    fake: FakeComputeEngine, provider: GCPProvider, clock: FakeClock
) -> None:
    inst = await provider.launch(multi(2))
    fresh = GCPProvider(_config(fake), clock=clock)  # knows nothing of the launch
    try:
        (listed,) = await fresh.list_instances("svc")
        assert listed.instance_id == inst.instance_id and listed.state is InstanceState.RUNNING
        assert listed.replica_id == 1 and listed.endpoint == inst.endpoint
        again = GCPProvider(_config(fake), clock=clock)  # terminate before any listing
        try:
            await again.terminate(inst.instance_id)
        finally:
            await again.close()
        await fresh.list_instances("svc")
        assert fake.instances == {}
    finally:
        await fresh.close()


async def test_a_node_still_without_the_node_list_keeps_the_replica_pending(
    fake: FakeComputeEngine, provider: GCPProvider
) -> None:
    inst = await provider.launch(multi(2))
    worker = nodes(fake)[1]
    worker["metadata"]["items"] = [  # as if the launch was cut short before writing it
        i for i in worker["metadata"]["items"] if i["key"] != "skyctl-node-ips"
    ]
    (listed,) = await provider.list_instances("svc")
    assert listed.instance_id == inst.instance_id
    assert listed.state is InstanceState.PENDING and listed.endpoint is None


async def test_one_node_replicas_are_unchanged(
    fake: FakeComputeEngine, provider: GCPProvider
) -> None:
    await provider.launch(_request())
    (vm,) = fake.instances.values()
    assert "skyctl-nodes" not in vm["labels"] and "skyctl-node-ips" not in meta(vm)
    assert [r["name"].endswith("-nodes") for r in fake.firewalls.values()] == [False]


def test_the_node_script_waits_for_the_node_list_on_the_metadata_server(
    tmp_path: Path,
) -> None:
    """The boot script's part, run with a stand-in for the metadata server's curl that
    answers only on the second try (the provider writes the list after the VM boots)."""
    fake = tmp_path / "curl"
    fake.write_text(
        "#!/bin/bash\n"
        f"n=$(cat {tmp_path}/n 2>/dev/null || echo 0); echo $((n+1)) > {tmp_path}/n\n"
        '[ "$n" -ge 1 ] || exit 22\n'
        'case "${@: -1}" in\n'
        "  */instance/attributes/skyctl-node-ips) echo '10.0.0.5 10.0.0.6 10.0.0.7' ;;\n"
        "  *) exit 22 ;;\n"
        "esac\n"
    )
    fake.chmod(0o755)
    script = node_script(2).replace("sleep 2", "sleep 0")
    done = subprocess.run(
        ["bash", "-c", script + '\nprintf "%s|%s" "$SKYPILOT_NODE_RANK" "$SKYPILOT_NODE_IPS"'],
        env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    waited, _, got = done.stdout.partition("\n")
    assert waited == "skyctl: waiting for this replica's node list", done.stderr
    assert got == "2|10.0.0.5\n10.0.0.6\n10.0.0.7", done.stderr
