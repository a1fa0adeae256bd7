"""Multi-node replicas on AWS (``num_nodes: N``), against moto's EC2 server.

One replica is N instances from one ``run_instances`` call in one zone, each
tagged with the replica and its rank, the head's id and the node list; the
controller sees one instance (the head's id and endpoint); the loss of any node
is the replica's; terminating the replica terminates every node.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from providers.aws import AWSProvider
from providers.aws_nodes import NODE_SCRIPT
from providers.base import LaunchRequest
from skyctl.types import InstanceEvent, InstanceEventKind, InstanceState
from tests.fakes.moto_server import MotoEC2, ec2, moto_ec2
from tests.test_aws_provider import (
    REGION,
    SPOT_M5,
    ZONE_A,
    aws_env,
    boto,
    clock,
    events,
    make_provider,
    provider,
    request,
    spec,
)

__all__ = ["aws_env", "boto", "clock", "ec2", "events", "make_provider", "moto_ec2", "provider"]


def multi(n: int, **kw: Any) -> LaunchRequest:
    req = request(**kw)
    return dataclasses.replace(req, spec=dataclasses.replace(req.spec, num_nodes=n))


def nodes(boto: Any, *states: str) -> list[dict[str, Any]]:
    """The service's instances in the given states, ordered by rank."""
    found = boto.describe_instances(
        Filters=[
            {"Name": "tag:skyctl-service", "Values": ["svc"]},
            {"Name": "instance-state-name", "Values": list(states)},
        ]
    )
    raws = [i for r in found["Reservations"] for i in r["Instances"]]
    return sorted(raws, key=lambda r: int(tags(r).get("skyctl-node-rank", "0")))


def tags(raw: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in raw.get("Tags", [])}


async def test_n_nodes_are_n_instances_in_one_zone_tagged_with_replica_and_rank(
    provider: AWSProvider, boto: Any
) -> None:
    inst = await provider.launch(multi(3))
    raws = nodes(boto, "pending", "running")
    assert len(raws) == 3
    assert {r["Placement"]["AvailabilityZone"] for r in raws} == {ZONE_A}
    head = raws[0]
    assert inst.instance_id == head["InstanceId"]  # the replica is its head
    ips = " ".join(r["PrivateIpAddress"] for r in raws)
    for rank, raw in enumerate(raws):
        t = tags(raw)
        assert (t["skyctl-service"], t["skyctl-replica"], t["skyctl-nodes"]) == ("svc", "1", "3")
        assert t["skyctl-node-rank"] == str(rank)
        assert t["skyctl-head"] == head["InstanceId"]
        assert t["skyctl-node-ips-0"] == ips  # the head's address first
        assert raw["MetadataOptions"]["InstanceMetadataTags"] == "enabled"
    attr = boto.describe_instance_attribute(InstanceId=head["InstanceId"], Attribute="userData")
    script = base64.b64decode(attr["UserData"]["Value"]).decode()
    assert "meta-data/tags/instance/" in script and "tag skyctl-node-rank" in script
    assert "export SKYPILOT_NUM_NODES=3" in script

    (listed,) = await provider.list_instances("svc")  # one replica, not three
    assert listed.instance_id == head["InstanceId"] and listed.replica_id == 1

    again = await provider.launch(multi(3))  # a retried launch: the same replica
    assert again.instance_id == inst.instance_id
    assert len(nodes(boto, "pending", "running")) == 3


async def test_offerings_price_a_replica_as_its_n_instances(provider: AWSProvider) -> None:
    one = await provider.offerings(spec(SPOT_M5))
    four = await provider.offerings(dataclasses.replace(spec(SPOT_M5), num_nodes=4))
    assert [o.price for o in four] == pytest.approx([4 * o.price for o in one])
    assert four


async def test_a_preempted_worker_preempts_the_replica_and_terminate_leaves_nothing(
    provider: AWSProvider, ec2: MotoEC2, boto: Any, events: list[InstanceEvent]
) -> None:
    inst = await provider.launch(multi(2))
    worker = nodes(boto, "pending", "running")[1]["InstanceId"]
    ec2.preempt(REGION, worker)
    (listed,) = await provider.list_instances("svc")
    assert listed.instance_id == inst.instance_id
    assert listed.state is InstanceState.PREEMPTED and listed.endpoint is None
    assert "node 1 of 2 preempted" in listed.detail
    assert [(e.kind, e.instance_id) for e in events] == [
        (InstanceEventKind.PREEMPTED, inst.instance_id)
    ]

    await provider.terminate(inst.instance_id)  # the controller ends the replica
    assert nodes(boto, "pending", "running", "stopping", "stopped") == []  # nothing leaked
    assert await provider.list_instances("svc") == []


async def test_a_worker_gone_otherwise_fails_the_replica(
    make_provider: Callable[..., AWSProvider], boto: Any
) -> None:
    provider = make_provider()
    inst = await provider.launch(multi(3, spot=False))
    worker = nodes(boto, "pending", "running")[2]["InstanceId"]
    boto.terminate_instances(InstanceIds=[worker])  # someone deleted a worker
    (listed,) = await provider.list_instances("svc")
    assert listed.state is InstanceState.FAILED
    assert "node 2 of 3 is gone" in listed.detail
    await provider.terminate(inst.instance_id)
    assert nodes(boto, "pending", "running") == []


async def test_one_node_replicas_are_unchanged(provider: AWSProvider, boto: Any) -> None:
    inst = await provider.launch(request())
    (raw,) = nodes(boto, "pending", "running")
    assert "skyctl-nodes" not in tags(raw) and "skyctl-head" not in tags(raw)
    assert "InstanceMetadataTags" not in raw["MetadataOptions"] or (
        raw["MetadataOptions"]["InstanceMetadataTags"] == "disabled"
    )
    await provider.terminate(inst.instance_id)


def test_the_node_script_reads_rank_and_peers_from_the_instance_tags(tmp_path: Path) -> None:
    """The boot script's part, run with a stand-in for the metadata service's curl."""
    fake = tmp_path / "curl"
    fake.write_text(
        "#!/bin/bash\n"
        'url="${@: -1}"\n'
        'case "$url" in\n'
        "  */api/token) echo tok ;;\n"
        "  */tags/instance/skyctl-node-rank) echo 2 ;;\n"
        "  */tags/instance/skyctl-node-ips-0) echo '10.0.0.5 10.0.0.6' ;;\n"
        "  */tags/instance/skyctl-node-ips-1) echo '10.0.0.7' ;;\n"
        "  *) exit 22 ;;\n"
        "esac\n"
    )
    fake.chmod(0o755)
    done = subprocess.run(
        ["bash", "-c", NODE_SCRIPT + 'printf "%s|%s" "$SKYPILOT_NODE_RANK" "$SKYPILOT_NODE_IPS"'],
        env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.stdout == "2|10.0.0.5\n10.0.0.6\n10.0.0.7", done.stderr


async def test_workers_of_a_head_aws_no_longer_lists_are_still_terminated(
    provider: AWSProvider, ec2: MotoEC2, boto: Any
) -> None:
    inst = await provider.launch(multi(2, spot=False))
    boto.terminate_instances(InstanceIds=[inst.instance_id])  # the head is lost...
    ec2.purge(REGION, inst.instance_id)  # ...and AWS no longer lists it
    (listed,) = await provider.list_instances("svc")
    assert listed.instance_id == inst.instance_id and listed.state is InstanceState.FAILED
    assert "node 0 of 2 is gone" in listed.detail
    await provider.terminate(inst.instance_id)
    assert nodes(boto, "pending", "running") == []  # the worker did not leak


async def test_the_nodes_reach_each_other_but_the_world_only_the_service_port(
    provider: AWSProvider, boto: Any
) -> None:
    inst = await provider.launch(multi(2))
    await provider.launch(multi(2, token="svc-2-b2", replica=2))  # the rule is added once
    (group,) = boto.describe_security_groups(GroupNames=["skyctl-svc-8080"])["SecurityGroups"]
    rules = group["IpPermissions"]
    world = [r for r in rules if r.get("IpRanges")]
    assert [(r["FromPort"], r["ToPort"]) for r in world] == [(8080, 8080)]
    peers = [r for r in rules if r.get("UserIdGroupPairs")]
    assert [(r["IpProtocol"], r["UserIdGroupPairs"][0]["GroupId"]) for r in peers] == [
        ("-1", group["GroupId"])
    ]
    await provider.terminate(inst.instance_id)
