"""``resources.labels`` on AWS: instance (and volume, spot request) tags beside skyctl's
own, through boto3 against moto's EC2 server. Listing and teardown still find the
instance by skyctl's tags; a label named like one of them is refused before any call."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from providers.aws import AWSProvider
from skyctl.errors import ConfigError
from tests.fakes.moto_server import MotoEC2, ec2, moto_ec2
from tests.test_aws_provider import (
    SPOT_M5,
    aws_env,
    boto,
    clock,
    described,
    events,
    make_provider,
    provider,
    request,
    spec,
)

__all__ = ["aws_env", "boto", "clock", "ec2", "events", "make_provider", "moto_ec2", "provider"]


def _labelled(labels: dict[str, str], **kw: Any) -> Any:
    candidate = dataclasses.replace(SPOT_M5, labels=labels)
    return dataclasses.replace(request(**kw), spec=spec(candidate))


async def test_labels_become_instance_and_volume_tags_beside_skyctls_own(
    provider: AWSProvider, boto: Any
) -> None:
    inst = await provider.launch(_labelled({"team": "ml", "cost-center": "42"}))
    tags = {t["Key"]: t["Value"] for t in described(boto, inst.instance_id)["Tags"]}
    assert tags["team"] == "ml" and tags["cost-center"] == "42"
    assert (tags["skyctl-service"], tags["skyctl-replica"]) == ("svc", "1")
    assert tags["Name"] == "skyctl-svc-1"
    volumes = boto.describe_volumes(Filters=[{"Name": "tag:team", "Values": ["ml"]}])["Volumes"]
    assert len(volumes) == 1
    (listed,) = await provider.list_instances("svc")  # found by skyctl's tags as before
    assert listed.instance_id == inst.instance_id
    await provider.terminate(inst.instance_id)
    assert await provider.list_instances("svc") == []


async def test_a_name_label_names_the_instance(provider: AWSProvider, boto: Any) -> None:
    inst = await provider.launch(_labelled({"Name": "llama-serving"}))
    tags = {t["Key"]: t["Value"] for t in described(boto, inst.instance_id)["Tags"]}
    assert tags["Name"] == "llama-serving" and tags["skyctl-service"] == "svc"


async def test_a_label_named_like_a_skyctl_tag_is_refused_before_any_call(
    provider: AWSProvider, ec2: MotoEC2
) -> None:
    with pytest.raises(ConfigError, match=r"resources.labels.skyctl-service: .*reserved"):
        await provider.launch(_labelled({"skyctl-service": "someone-else"}))
    assert not [c for c in ec2.calls if c["Action"] in ("RunInstances", "CreateSecurityGroup")]


@pytest.mark.parametrize("name", ["cost center", "team/ml", "_index"])
async def test_a_multi_node_replica_refuses_labels_the_instance_metadata_cannot_show(
    provider: AWSProvider, ec2: MotoEC2, name: str
) -> None:
    """Its nodes read their rank and peers from the instance metadata's tags; EC2
    refuses the launch when a tag name there has a space or '/'."""
    req = _labelled({name: "x"})
    req = dataclasses.replace(req, spec=dataclasses.replace(req.spec, num_nodes=2))
    with pytest.raises(ConfigError, match=r"with num_nodes > 1 .*no spaces or /"):
        await provider.launch(req)
    assert not [c for c in ec2.calls if c["Action"] == "RunInstances"]
    await provider.launch(_labelled({name: "x"}))  # one node: no metadata tags, fine
