"""Peer review of the AWS provider, through boto3 against moto.

A 429 from AWS (or a proxy in front of a private endpoint), and the throttling
codes botocore itself classes as throttling, are retried with backoff and end
as a TransientError (naming what kept failing), never as a ConfigError that
fails the service. A stopped instance is not reported as gone.
"""

from __future__ import annotations

import socket

import boto3
import pytest

from providers.aws import AWSProvider
from skyctl.clock import FakeClock
from skyctl.errors import TransientError
from skyctl.types import InstanceState
from tests.fakes.moto_server import MotoEC2, ec2, moto_ec2
from tests.test_aws_provider import (
    REGION,
    aws_env,
    clock,
    drive,
    events,
    make_provider,
    provider,
    request,
)

__all__ = ["aws_env", "clock", "ec2", "events", "make_provider", "moto_ec2", "provider"]


@pytest.mark.parametrize(
    ("code", "status"),
    [("TooManyRequestsException", 429), ("EC2ThrottledException", 400), ("SlowDown", 503)],
)
async def test_throttling_beyond_ec2_codes_is_retried_then_succeeds(
    provider: AWSProvider, ec2: MotoEC2, clock: FakeClock, code: str, status: int
) -> None:
    ec2.fail("RunInstances", code, status=status, times=2)
    inst = await drive(clock, provider.launch(request()))
    assert inst.instance_id.startswith("i-")
    assert sum(c["Action"] == "RunInstances" for c in ec2.calls) == 3


async def test_a_429_answered_every_time_ends_as_a_transient_error(
    provider: AWSProvider, ec2: MotoEC2, clock: FakeClock
) -> None:
    ec2.fail("DescribeInstances", "TooManyRequests", status=429)
    with pytest.raises(TransientError, match="after 5 attempts"):
        await drive(clock, provider.list_instances("svc"))
    assert sum(c["Action"] == "DescribeInstances" for c in ec2.calls) == 5


async def test_an_unreachable_endpoint_says_which_url_after_the_retries(
    clock: FakeClock, aws_env: None
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    provider = AWSProvider({"endpoint_url": url, "regions": ["us-east-1"]}, clock=clock)
    try:
        with pytest.raises(TransientError, match="after 5 attempts") as info:
            await drive(clock, provider.list_instances("svc"))
    finally:
        await provider.close()
    message = str(info.value)
    assert url in message and "\n" not in message, message


async def test_a_stopped_instance_is_failed_not_terminated_so_teardown_still_ends_it(
    provider: AWSProvider, ec2: MotoEC2
) -> None:
    """A stopped EC2 instance stays (and its volumes cost) until terminated: teardown
    and the purge sweep terminate every listed instance except TERMINATED ones."""
    inst = await provider.launch(request())
    boto = boto3.client("ec2", region_name=REGION, endpoint_url=ec2.url)
    boto.stop_instances(InstanceIds=[inst.instance_id])
    [listed] = await provider.list_instances("svc")
    assert listed.state is InstanceState.FAILED and "stopped" in listed.detail
    await provider.terminate(inst.instance_id)
    assert [i.state for i in await provider.list_instances("svc")] in (
        [],
        [InstanceState.TERMINATED],
    )
