"""Peer review of the AWS provider: throttling answers beyond EC2's own codes.

A 429 from AWS (or a proxy in front of a private endpoint), and the throttling
codes botocore itself classes as throttling, are retried with backoff and end
as a TransientError, never as a ConfigError that fails the service.
"""

from __future__ import annotations

import pytest

from providers.aws import AWSProvider
from skyctl.clock import FakeClock
from skyctl.errors import TransientError
from tests.fakes.moto_server import MotoEC2, ec2, moto_ec2
from tests.test_aws_provider import aws_env, clock, drive, events, make_provider, provider, request

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
