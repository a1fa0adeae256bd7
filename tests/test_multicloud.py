"""One service over AWS, GCP and Azure at once, through the real controller.

The real providers (boto3, google-cloud-compute, the Azure SDK) talk over real
HTTP to moto and to our fake Compute Engine and Resource Manager APIs; the
controller, its store, SpotHedge placement, probes and router are the real
ones, on one FakeClock. Every public address points at one small aiohttp app
on 127.0.0.1 (``tests/helpers/multicloud.py``), so replicas become READY and
the service answers through its own endpoint.

Placement in these specs: the AWS location (one pinned zone) is the cheapest
(moto reports a spot price of $0.00001), Azure's (one pinned zone,
Standard_D2s_v5, $0.0115) next, then GCP's four us-central1 zones
(e2-standard-2, $0.0201 each, tried in zone order). SpotHedge puts three
replicas in three different locations, cheapest first: one per cloud.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from providers.base import LaunchRequest
from skyctl.clock import FakeClock
from skyctl.lifecycle import EndReason, ReplicaStatus
from skyctl.spec_yaml import parse_spec
from skyctl.store import ReplicaRecord
from skyctl.types import Location, Offering
from tests.fakes.azure_server import FakeAzure
from tests.fakes.gcp_server import FakeComputeEngine
from tests.fakes.moto_server import MotoEC2, ec2, fake_aws_credentials, moto_ec2
from tests.helpers.multicloud import (
    AWS_REGION,
    AZURE_REGION,
    CLOUDS,
    GCP_REGION,
    LOOPBACK,
    MOTO_PUBLIC_IP,
    CloudFakes,
    Harness,
)

__all__ = ["ec2", "moto_ec2"]  # the fixtures, re-exported for pytest

NAME = "multi"
AWS_ZONE, AZURE_ZONE = "us-east-1a", "1"
GCP_FIRST_ZONE = "us-central1-a"  # the GCP zone SpotHedge tries first (zone order at one price)

SPEC = """\
name: {name}
service:
  readiness_probe:
    path: /health
    initial_delay_seconds: 3600
    timeout_seconds: 2
    period_seconds: 1
  replica_policy:
    min_replicas: 3
    max_replicas: 3
    spot_policy: spothedge
  ports: {port}
resources:
  use_spot: true
  any_of:
    - {{cloud: aws, region: us-east-1, zone: us-east-1a, instance_type: m5.large}}
    - {{cloud: gcp, region: us-central1, instance_type: e2-standard-2}}
    - {{cloud: azure, region: eastus, zone: "1", instance_type: Standard_D2s_v5}}
setup: pip install my-model
run: python -m my_model --port $PORT
"""


@pytest.fixture
def aws_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake AWS credentials through boto3's standard chain; moto's public IPs on loopback."""
    fake_aws_credentials(monkeypatch, tmp_path, AWS_REGION)
    monkeypatch.setattr(MOTO_PUBLIC_IP, lambda: LOOPBACK)


@pytest.fixture
async def fakes(ec2: MotoEC2, tmp_path: Path) -> AsyncIterator[CloudFakes]:
    clock = FakeClock()
    gcp = FakeComputeEngine(now=clock.now)
    async with contextlib.AsyncExitStack() as stack:
        await gcp.start()
        stack.push_async_callback(gcp.stop)
        azure = await stack.enter_async_context(FakeAzure(tmp_path))
        yield CloudFakes(clock=clock, aws=ec2, gcp=gcp, azure=azure)


@pytest.fixture
async def h(fakes: CloudFakes, tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(fakes, tmp_path)
    try:
        yield harness
    finally:
        await harness.close()


@pytest.fixture
async def app_port() -> AsyncIterator[int]:
    """The one replica server behind every cloud's public address: 200 on any GET."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{tail:.*}", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, 0).start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


def spec(port: int, name: str = NAME) -> str:
    return SPEC.format(name=name, port=port)


async def up(h: Harness, port: int) -> dict[str, ReplicaRecord]:
    """Start the controller, create the service, wait for a READY replica in each cloud."""
    await h.start()
    await h.controller.create_service(spec(port), None)
    await h.until(lambda: h.ready_clouds(NAME) == sorted(CLOUDS))
    return {r.location.cloud: r for r in h.live(NAME)}


async def replaced(h: Harness, victim: ReplicaRecord) -> ReplicaRecord:
    """Wait until ``victim`` has ended and three replicas are READY again; the newcomer."""
    before = {r.replica_id for r in h.live(NAME)}
    await h.until(
        lambda: (
            (r := h.store.get_replica(NAME, victim.replica_id)) is not None
            and r.status is ReplicaStatus.TERMINATED
            and len(h.ready(NAME)) == 3
        )
    )
    (newcomer,) = [r for r in h.live(NAME) if r.replica_id not in before]
    return newcomer


async def test_a_spot_service_spans_three_clouds_through_capacity_loss_preemption_and_down(
    app_port: int, h: Harness
) -> None:
    h.fakes.gcp.exhaust(GCP_FIRST_ZONE)  # no spot capacity where GCP's replica goes first

    # (1) up: a READY replica in each cloud, and each cloud holds one instance with our tags
    by_cloud = await up(h, app_port)
    held = await h.fakes.instances(NAME)
    assert {cloud: len(tags) for cloud, tags in held.items()} == {c: 1 for c in CLOUDS}
    for cloud, (tags,) in held.items():
        assert tags["skyctl-service"] == NAME
        assert tags["skyctl-replica"] == str(by_cloud[cloud].replica_id)
        assert tags["skyctl-version"] == "1"
    assert by_cloud["aws"].location == Location("aws", AWS_REGION, AWS_ZONE)
    assert by_cloud["azure"].location == Location("azure", AZURE_REGION, AZURE_ZONE)
    assert all(r.spot for r in h.live(NAME))
    assert await h.get(NAME) == 200

    # (2) the capacity error: that launch failed, its location is marked, and GCP's
    # replica runs in another of its zones
    failed = [r for r in h.ended(NAME) if r.end_reason is EndReason.FAILED_PROVISION]
    assert [r.location for r in failed] == [Location("gcp", GCP_REGION, GCP_FIRST_ZONE)]
    assert by_cloud["gcp"].location.zone != GCP_FIRST_ZONE
    assert h.store.location_states(NAME)[failed[0].location] == "PREEMPTED"

    # (3) Azure evicts its spot VM: that replica ends PREEMPTED and a new one takes its place
    victim = by_cloud["azure"]
    assert victim.instance_id is not None
    h.fakes.preempt("azure", victim.instance_id)
    newcomer = await replaced(h, victim)
    gone = h.store.get_replica(NAME, victim.replica_id)
    assert gone is not None and gone.end_reason is EndReason.PREEMPTED
    assert newcomer.spot and newcomer.location != victim.location
    assert h.store.location_states(NAME)[victim.location] == "PREEMPTED"
    assert await h.get(NAME) == 200

    # (4) serve down: the service is forgotten and no cloud keeps anything of it
    await h.controller.delete_service(NAME)
    await h.until(lambda: h.store.get_service(NAME) is None)
    assert await h.fakes.leftovers() == {c: [] for c in CLOUDS}


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
async def test_a_replica_preempted_by_its_cloud_ends_preempted_and_is_replaced_elsewhere(
    app_port: int, h: Harness, cloud: str
) -> None:
    victim = (await up(h, app_port))[cloud]
    assert victim.instance_id is not None
    h.fakes.preempt(cloud, victim.instance_id)
    newcomer = await replaced(h, victim)
    gone = h.store.get_replica(NAME, victim.replica_id)
    assert gone is not None and gone.end_reason is EndReason.PREEMPTED
    assert newcomer.spot and newcomer.location != victim.location
    assert h.store.location_states(NAME)[victim.location] == "PREEMPTED"
    held = await h.fakes.instances(NAME)
    assert sum(len(tags) for tags in held.values()) == 3
    assert str(victim.replica_id) not in {t["skyctl-replica"] for t in held[cloud]}


async def test_on_start_the_controller_terminates_instances_of_unknown_services_in_every_cloud(
    h: Harness,
) -> None:
    ghost = parse_spec(spec(8080, name="ghost"))
    offers = {
        "aws": Offering(Location("aws", AWS_REGION, AWS_ZONE), True, 0.035, "m5.large"),
        "gcp": Offering(Location("gcp", GCP_REGION, "us-central1-b"), True, 0.02, "e2-standard-2"),
        "azure": Offering(
            Location("azure", AZURE_REGION, AZURE_ZONE), True, 0.0115, "Standard_D2s_v5"
        ),
    }
    for cloud, offer in offers.items():
        request = LaunchRequest(
            service="ghost",
            replica_id=1,
            version=1,
            offering=offer,
            client_token=f"ghost-{cloud}",
            spec=ghost,
        )
        await h.drive(h.providers.get(cloud).launch(request))
    held = await h.fakes.instances("ghost")
    assert {cloud: len(tags) for cloud, tags in held.items()} == {c: 1 for c in CLOUDS}

    await h.start()  # the store knows no service called "ghost"

    assert await h.fakes.instances("ghost") == {c: [] for c in CLOUDS}
