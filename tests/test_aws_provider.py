"""The AWS provider, driven through the real boto3 against moto's EC2 server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest

from providers.aws import NOTICE_SECONDS, AWSProvider, check
from providers.base import LaunchRequest
from skyctl.clock import FakeClock
from skyctl.errors import CapacityError, ConfigError, QuotaError, SpecError, TransientError
from skyctl.spec import ResourceCandidate, Resources, ServiceSpec
from skyctl.types import InstanceEvent, InstanceEventKind, InstanceState, Location, Offering
from tests.fakes.moto_server import MotoEC2, ec2, fake_aws_credentials, moto_ec2

__all__ = ["ec2", "moto_ec2"]  # the fixtures, re-exported for pytest

T = TypeVar("T")
REGION = "us-east-1"
ZONE_A, ZONE_B = "us-east-1a", "us-east-1b"


@pytest.fixture
def aws_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials through the standard env chain; no real AWS files or IMDS."""
    fake_aws_credentials(monkeypatch, tmp_path, REGION)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def events() -> list[InstanceEvent]:
    return []


@pytest.fixture
async def make_provider(
    ec2: MotoEC2, clock: FakeClock
) -> AsyncIterator[Callable[..., AWSProvider]]:
    """Build providers on the moto endpoint (config keys as kwargs); all closed afterwards."""
    made: list[AWSProvider] = []

    def make(**config: Any) -> AWSProvider:
        made.append(
            AWSProvider({"endpoint_url": ec2.url, "regions": [REGION], **config}, clock=clock)
        )
        return made[-1]

    yield make
    for p in made:
        await p.close()


@pytest.fixture
def provider(make_provider: Callable[..., AWSProvider], events: list[InstanceEvent]) -> AWSProvider:
    p = make_provider()
    p.set_event_sink(events.append)
    return p


@pytest.fixture
def boto(ec2: MotoEC2) -> Any:
    """A plain boto3 client, to look at what the provider did."""
    return boto3.client("ec2", region_name=REGION, endpoint_url=ec2.url)


def spec(*candidates: ResourceCandidate, use_spot: bool = True) -> ServiceSpec:
    return ServiceSpec(
        name="svc",
        resources=Resources(candidates=candidates, use_spot=use_spot),
        setup="pip install my-model",
        run="python -m my_model --port $PORT",
    )


SPOT_M5 = ResourceCandidate(cloud="aws", instance_type="m5.large", use_spot=True)


def request(
    *,
    spot: bool = True,
    zone: str = ZONE_A,
    token: str = "svc-1-a1",
    replica: int = 1,
    port: int = 8080,
) -> LaunchRequest:
    offering = Offering(Location("aws", REGION, zone), spot, 0.035, "m5.large", "")
    return LaunchRequest(
        service="svc",
        replica_id=replica,
        version=2,
        offering=offering,
        client_token=token,
        spec=spec(SPOT_M5),
        port=port,
        envs={"MODEL": "tiny"},
    )


async def drive(clock: FakeClock, aw: Awaitable[T]) -> T:
    """Await ``aw`` while moving the fake clock, so backoff sleeps end at once."""
    task = asyncio.ensure_future(aw)
    while not task.done():
        await clock.advance(60)
        await asyncio.sleep(0.01)
    return task.result()


def described(boto: Any, instance_id: str) -> dict[str, Any]:
    resp = boto.describe_instances(InstanceIds=[instance_id])
    return dict(resp["Reservations"][0]["Instances"][0])


# offerings ------------------------------------------------------------------------------


async def test_offerings_cover_every_zone_offering_the_type_with_spot_and_ondemand_prices(
    provider: AWSProvider,
) -> None:
    offers = await provider.offerings(spec(SPOT_M5))
    east = [o for o in offers if o.location.region == REGION]
    zones = {o.location.zone for o in east}
    assert zones == {"us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d", "us-east-1f"}
    assert {o.location.region for o in offers} == {REGION}  # the configured regions only
    ondemand = {o.price for o in east if not o.spot}
    spot = {o.price for o in east if o.spot}
    assert ondemand == {0.096}  # the catalog's on-demand price
    assert spot == {0.00001}  # moto's live spot price history
    assert all(o.instance_type == "m5.large" and o.location.cloud == "aws" for o in offers)


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        (ResourceCandidate(cloud="aws", zone=ZONE_B, instance_type="m5.large"), {(REGION, ZONE_B)}),
        (
            ResourceCandidate(cloud="aws", region="us-west-2", instance_type="m5.large"),
            {"us-west-2"},
        ),
        (ResourceCandidate(cloud="aws", accelerators={"T4": 1}), {"g4dn.xlarge", "g4dn.2xlarge"}),
        (ResourceCandidate(cloud="aws", accelerators={"A100": 3}), set()),
        (ResourceCandidate(cloud="gcp", instance_type="m5.large"), set()),
        (ResourceCandidate(instance_type="m5.large"), set()),  # no cloud: local
    ],
)
async def test_offerings_follow_the_candidate(
    provider: AWSProvider, candidate: ResourceCandidate, expected: set[Any]
) -> None:
    offers = await provider.offerings(spec(candidate))
    if not expected:
        assert offers == []
    elif candidate.zone:
        assert {(o.location.region, o.location.zone) for o in offers} == expected
    elif candidate.region:
        assert {o.location.region for o in offers} == expected
    else:
        assert {o.instance_type for o in offers} == expected
        assert {o.accelerators for o in offers} == {"T4:1"}


# launch ---------------------------------------------------------------------------------


async def test_spot_launch_tags_the_instance_and_sends_the_bootstrap(
    provider: AWSProvider, boto: Any
) -> None:
    inst = await provider.launch(request(spot=True))
    assert inst.state in (InstanceState.PENDING, InstanceState.RUNNING)
    assert (inst.service, inst.replica_id, inst.version, inst.spot) == ("svc", 1, 2, True)
    assert inst.location == Location("aws", REGION, ZONE_A)
    raw = described(boto, inst.instance_id)
    assert raw["InstanceLifecycle"] == "spot"
    assert raw["InstanceType"] == "m5.large"
    assert raw["Placement"]["AvailabilityZone"] == ZONE_A
    tags = {t["Key"]: t["Value"] for t in raw["Tags"]}
    assert {k: tags[k] for k in ("skyctl-service", "skyctl-replica", "skyctl-version")} == {
        "skyctl-service": "svc",
        "skyctl-replica": "1",
        "skyctl-version": "2",
    }
    attr = boto.describe_instance_attribute(InstanceId=inst.instance_id, Attribute="userData")
    script = base64.b64decode(attr["UserData"]["Value"]).decode()
    assert "python -m my_model --port $PORT" in script
    assert "export MODEL=tiny" in script
    assert "spot/instance-action" in script  # the notice watcher runs on spot replicas


async def test_ondemand_launch_is_not_spot_and_has_no_notice_watcher(
    provider: AWSProvider, boto: Any
) -> None:
    inst = await provider.launch(request(spot=False))
    raw = described(boto, inst.instance_id)
    assert inst.spot is False
    assert "InstanceLifecycle" not in raw or raw["InstanceLifecycle"] != "spot"


async def test_security_group_opens_only_the_service_port_and_is_shared(
    provider: AWSProvider, boto: Any
) -> None:
    a = await provider.launch(request(token="t-1", replica=1, port=9000))
    b = await provider.launch(request(token="t-2", replica=2, port=9000))
    groups = {
        g["GroupId"] for x in (a, b) for g in described(boto, x.instance_id)["SecurityGroups"]
    }
    assert len(groups) == 1
    (group,) = boto.describe_security_groups(GroupIds=list(groups))["SecurityGroups"]
    assert group["GroupName"] == "skyctl-svc-9000"
    assert [(p["IpProtocol"], p["FromPort"], p["ToPort"]) for p in group["IpPermissions"]] == [
        ("tcp", 9000, 9000)
    ]


async def test_a_retried_launch_with_the_same_token_returns_the_same_instance(
    provider: AWSProvider,
) -> None:
    first = await provider.launch(request(token="svc-1-attempt-1"))
    again = await provider.launch(request(token="svc-1-attempt-1"))
    other = await provider.launch(request(token="svc-1-attempt-2"))
    assert again.instance_id == first.instance_id
    assert other.instance_id != first.instance_id
    assert len(await provider.list_instances("svc")) == 2


async def test_configured_and_default_amis_are_used(
    make_provider: Callable[..., AWSProvider], boto: Any
) -> None:
    images = boto.describe_images(Owners=["099720109477"])["Images"]
    trusty = next(i["ImageId"] for i in images if "trusty" in i["Name"])
    xenial = next(i["ImageId"] for i in images if "xenial" in i["Name"])
    default = make_provider()
    configured = make_provider(ami=trusty)
    inst = await default.launch(request(token="d"))
    assert described(boto, inst.instance_id)["ImageId"] == xenial  # newest Ubuntu LTS found
    inst = await configured.launch(request(token="c"))
    assert described(boto, inst.instance_id)["ImageId"] == trusty


async def test_candidate_image_id_and_disk_size_shape_the_instance(
    provider: AWSProvider, boto: Any
) -> None:
    images = boto.describe_images(Owners=["099720109477"])["Images"]
    trusty = next(i["ImageId"] for i in images if "trusty" in i["Name"])
    candidate = ResourceCandidate(
        cloud="aws", instance_type="m5.large", use_spot=True, image_id=trusty, disk_size=200
    )
    req = dataclasses.replace(request(), spec=spec(candidate))
    inst = await provider.launch(req)
    raw = described(boto, inst.instance_id)
    assert raw["ImageId"] == trusty
    volume_ids = [m["Ebs"]["VolumeId"] for m in raw["BlockDeviceMappings"]]
    sizes = [v["Size"] for v in boto.describe_volumes(VolumeIds=volume_ids)["Volumes"]]
    assert 200 in sizes


async def test_a_boot_script_over_the_user_data_limit_is_a_spec_error(
    provider: AWSProvider, ec2: MotoEC2
) -> None:
    big = dataclasses.replace(request(), envs={"BLOB": "x" * 20_000})
    with pytest.raises(SpecError, match="16384"):
        await provider.launch(big)
    assert not any(c["Action"] == "RunInstances" for c in ec2.calls)


# errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("InsufficientInstanceCapacity", 500, CapacityError),
        ("InsufficientCapacity", 500, CapacityError),
        ("SpotMaxPriceTooLow", 400, CapacityError),
        ("InstanceLimitExceeded", 400, QuotaError),
        ("VcpuLimitExceeded", 400, QuotaError),
        ("MaxSpotInstanceCountExceeded", 400, QuotaError),
        ("UnauthorizedOperation", 403, ConfigError),
    ],
)
async def test_launch_errors_become_typed_errors_naming_the_location(
    provider: AWSProvider, ec2: MotoEC2, code: str, status: int, error: type[Exception]
) -> None:
    ec2.fail("RunInstances", code, status=status, zone=ZONE_A)
    with pytest.raises(error, match=code) as info:
        await provider.launch(request(zone=ZONE_A))
    if error is not ConfigError:
        assert getattr(info.value, "location", None) == f"aws/{REGION}/{ZONE_A}"
    assert sum(c["Action"] == "RunInstances" for c in ec2.calls) == 1  # not retried


async def test_capacity_error_in_one_zone_leaves_other_zones_launchable(
    provider: AWSProvider, ec2: MotoEC2
) -> None:
    ec2.fail("RunInstances", "InsufficientInstanceCapacity", status=500, zone=ZONE_A)
    with pytest.raises(CapacityError):
        await provider.launch(request(zone=ZONE_A, token="x-1"))
    inst = await provider.launch(request(zone=ZONE_B, token="x-2"))
    assert inst.location.zone == ZONE_B
    assert [i.instance_id for i in await provider.list_instances("svc")] == [inst.instance_id]


async def test_throttling_is_retried_with_backoff_then_succeeds(
    provider: AWSProvider, ec2: MotoEC2, clock: FakeClock
) -> None:
    ec2.fail("RunInstances", "RequestLimitExceeded", status=503, times=2)
    start = clock.now()
    inst = await drive(clock, provider.launch(request()))
    assert inst.instance_id.startswith("i-")
    assert sum(c["Action"] == "RunInstances" for c in ec2.calls) == 3
    assert clock.now() > start  # the waits were on the injected clock


@pytest.mark.parametrize(
    ("code", "status"), [("RequestLimitExceeded", 503), ("InternalError", 500)]
)
async def test_persistent_transient_errors_end_as_transient_error(
    provider: AWSProvider, ec2: MotoEC2, clock: FakeClock, code: str, status: int
) -> None:
    ec2.fail("DescribeInstances", code, status=status)
    with pytest.raises(TransientError, match="after 5 attempts"):
        await drive(clock, provider.list_instances("svc"))


async def test_unknown_config_keys_and_bad_values_are_rejected(
    clock: FakeClock, aws_env: None
) -> None:
    with pytest.raises(ConfigError, match=r"unknown key.*zone.*allowed"):
        AWSProvider({"zone": "us-east-1a"}, clock=clock)
    with pytest.raises(ConfigError, match=r"aws\.regions must be a list"):
        AWSProvider({"regions": "us-east-1"}, clock=clock)
    with pytest.raises(ConfigError, match=r"aws\.max_attempts"):
        AWSProvider({"max_attempts": 0}, clock=clock)


# state ----------------------------------------------------------------------------------


async def test_list_finds_instances_by_tag_with_their_endpoint(
    provider: AWSProvider, make_provider: Callable[..., AWSProvider], boto: Any
) -> None:
    inst = await provider.launch(request(port=8123))
    boto.run_instances(ImageId="ami-1e749f67", MinCount=1, MaxCount=1)  # not ours
    fresh = make_provider()  # a new provider: nothing in memory
    (listed,) = await fresh.list_instances("svc")
    ip = described(boto, inst.instance_id)["PublicIpAddress"]
    assert listed.instance_id == inst.instance_id
    assert listed.state is InstanceState.RUNNING
    assert listed.endpoint == f"http://{ip}:8123"
    assert listed.price == pytest.approx(0.035)
    assert await fresh.list_instances("other") == []
    assert await fresh.list_services() == ["svc"]


async def test_terminate_removes_the_instance_and_then_its_security_group(
    provider: AWSProvider, boto: Any
) -> None:
    inst = await provider.launch(request())
    await provider.terminate(inst.instance_id)
    assert described(boto, inst.instance_id)["State"]["Name"] in ("shutting-down", "terminated")
    assert await provider.list_instances("svc") == []
    groups = boto.describe_security_groups(
        Filters=[{"Name": "tag:skyctl-service", "Values": ["svc"]}]
    )
    assert groups["SecurityGroups"] == []
    assert await provider.list_services() == []


async def test_release_service_retries_a_group_still_in_use_then_deletes_it(
    provider: AWSProvider, ec2: MotoEC2, boto: Any, clock: FakeClock
) -> None:
    await provider.launch(request())
    ec2.fail("DeleteSecurityGroup", "DependencyViolation", times=2)
    await drive(clock, provider.release_service("svc"))
    assert sum(c["Action"] == "DeleteSecurityGroup" for c in ec2.calls) == 3
    left = boto.describe_security_groups(
        Filters=[{"Name": "tag:skyctl-service", "Values": ["svc"]}]
    )
    assert left["SecurityGroups"] == []


async def test_leftover_security_groups_surface_in_list_services_until_swept(
    provider: AWSProvider, ec2: MotoEC2, boto: Any
) -> None:
    inst = await provider.launch(request())
    ec2.fail("DeleteSecurityGroup", "DependencyViolation", times=1)
    await provider.terminate(inst.instance_id)
    assert await provider.list_instances("svc") == []  # the sweep met DependencyViolation
    assert await provider.list_services() == ["svc"]  # so garbage collection looks again
    assert await provider.list_instances("svc") == []
    assert await provider.list_services() == []


async def test_terminating_an_unknown_instance_counts_as_done(provider: AWSProvider) -> None:
    await provider.terminate("i-0123456789abcdef0")


async def test_spot_termination_is_reported_as_preempted_once(
    provider: AWSProvider, ec2: MotoEC2, events: list[InstanceEvent]
) -> None:
    inst = await provider.launch(request())
    ec2.preempt(REGION, inst.instance_id)
    (listed,) = await provider.list_instances("svc")
    assert listed.state is InstanceState.PREEMPTED
    assert "Server.SpotInstanceTermination" in listed.detail
    await provider.list_instances("svc")
    assert [(e.kind, e.instance_id, e.replica_id) for e in events] == [
        (InstanceEventKind.PREEMPTED, inst.instance_id, 1)
    ]
    await provider.terminate(inst.instance_id)  # the controller lets it go
    assert await provider.list_instances("svc") == []


async def test_an_ended_instance_is_remembered_until_aws_stops_listing_it(
    provider: AWSProvider, ec2: MotoEC2, events: list[InstanceEvent]
) -> None:
    """Bounded memory: what the provider keeps per instance (its region, that it was
    released, the events told) goes once AWS no longer lists the instance."""
    inst = await provider.launch(request())
    other = await provider.launch(request(replica=2, token="svc-2-a1"))
    ec2.preempt(REGION, inst.instance_id)
    await provider.list_instances("svc")
    await provider.terminate(inst.instance_id)  # the controller lets it go
    for _ in range(2):  # still listed (terminated): still released, never told again
        assert [i.instance_id for i in await provider.list_instances("svc")] == [other.instance_id]
    assert len(events) == 1
    ec2.purge(REGION, inst.instance_id)
    await provider.list_instances("svc")
    remembered = (provider._where, provider._service_of, provider._released)
    assert all(inst.instance_id not in kept for kept in remembered)
    assert all(other.instance_id in kept for kept in remembered[:2])
    assert len(provider._told) == 0


async def test_user_terminated_instances_are_not_reported_as_preempted(
    provider: AWSProvider, boto: Any, events: list[InstanceEvent]
) -> None:
    inst = await provider.launch(request())
    boto.terminate_instances(InstanceIds=[inst.instance_id])
    assert await provider.list_instances("svc") == []
    assert events == []


async def test_interruption_notice_sets_interruption_at_and_emits_notice(
    provider: AWSProvider, ec2: MotoEC2, events: list[InstanceEvent], clock: FakeClock
) -> None:
    inst = await provider.launch(request())
    await provider.list_instances("svc")
    ec2.mark_for_termination(REGION, inst.instance_id)
    (listed,) = await provider.list_instances("svc")
    assert listed.state is InstanceState.RUNNING
    assert listed.interruption_at is not None
    assert clock.now() <= listed.interruption_at <= clock.now() + NOTICE_SECONDS
    await provider.list_instances("svc")
    assert [(e.kind, e.instance_id) for e in events] == [
        (InstanceEventKind.NOTICE, inst.instance_id)
    ]


# credentials and packaging --------------------------------------------------------------


def test_check_reports_credentials_from_the_standard_chain(aws_env: None) -> None:
    ok, message = check({})
    assert ok is True
    assert "testing" not in message  # never the secret


def test_check_says_what_to_configure_without_credentials(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    ok, message = check({})
    assert ok is False
    assert "aws configure" in message and "AWS_ACCESS_KEY_ID" in message
    ok, message = check({"profile": "nope"})
    assert ok is False and "nope" in message
