"""AWS, GCP and Azure fakes side by side, and a controller that drives all three.

Used by ``tests/test_multicloud.py``. :class:`CloudFakes` holds moto's EC2
server, the fake Compute Engine API and the fake Azure Resource Manager, builds
the real providers on them (one FakeClock for everything) and reads back what
each fake holds, through the same tags and labels the providers write.

The clouds hand out public addresses nobody can reach from here, so a replica
could never pass its readiness probe. :meth:`CloudFakes.point_at_loopback`
rewrites the GCP and Azure addresses to 127.0.0.1 (the AWS address comes from
moto, patched by the test with :data:`MOTO_PUBLIC_IP`), where one small aiohttp
app on the spec's ``service.ports`` answers for every replica: probes, READY
and routing are real HTTP.

:class:`Harness` is the controller over a store in ``tmp_path`` with the three
providers registered; :meth:`Harness.until` moves fake time in small steps and
yields to real I/O between them, as ``tests/test_controller.py`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import boto3

from providers.aws import AWSProvider
from providers.azure import AzureProvider
from providers.base import Provider
from providers.gcp import GCPProvider
from providers.registry import ProviderSet
from skyctl.clock import FakeClock
from skyctl.controller import Controller
from skyctl.lifecycle import ReplicaStatus
from skyctl.store import ReplicaRecord, Store
from tests.fakes.azure_server import FakeAzure, FakeCredential
from tests.fakes.gcp_server import FakeComputeEngine
from tests.fakes.moto_server import MotoEC2

T = TypeVar("T")

CLOUDS = ("aws", "gcp", "azure")
AWS_REGION, GCP_REGION, AZURE_REGION = "us-east-1", "us-central1", "eastus"
LOOPBACK = "127.0.0.1"
#: where ``moto.ec2.models.elastic_network_interfaces.random_public_ip`` is patched
MOTO_PUBLIC_IP = "moto.ec2.models.elastic_network_interfaces.random_public_ip"
TAG = "skyctl-service"  # the tag (AWS, Azure) and label (GCP) naming a replica's service
AZURE_NETWORK = ("virtualMachines", "networkInterfaces", "publicIPAddresses")
AZURE_LEFTOVERS = (*AZURE_NETWORK, "networkSecurityGroups")
AWS_LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]


@dataclass
class CloudFakes:
    clock: FakeClock
    aws: MotoEC2
    gcp: FakeComputeEngine
    azure: FakeAzure

    def providers(self) -> list[Provider]:
        """The real AWS, GCP and Azure providers, each pointed at its fake."""
        return [
            AWSProvider({"endpoint_url": self.aws.url, "regions": [AWS_REGION]}, clock=self.clock),
            GCPProvider(
                {
                    "project": "p",
                    "api_endpoint": self.gcp.endpoint,
                    "credentials": "anonymous",
                    "regions": [GCP_REGION],
                },
                clock=self.clock,
            ),
            AzureProvider(
                self.azure.provider_config(regions=[AZURE_REGION]),
                clock=self.clock,
                credential=FakeCredential(),
            ),
        ]

    def point_at_loopback(self) -> None:
        """Every public address the GCP and Azure fakes handed out becomes 127.0.0.1."""
        for inst in self.gcp.instances.values():
            for nic in inst.get("networkInterfaces", []):
                for access in nic.get("accessConfigs", []):
                    if access.get("natIP"):
                        access["natIP"] = LOOPBACK
        for res in self.azure.state.resources.values():
            if res["type"].endswith("publicIPAddresses"):
                res["properties"]["ipAddress"] = LOOPBACK

    def preempt(self, cloud: str, instance_id: str) -> None:
        """Take a spot instance away the way its cloud does: AWS terminates it with
        ``Server.SpotInstanceTermination``, GCP records ``compute.instances.preempted``
        and deletes it, Azure evicts (deletes) the VM and leaves its NIC and IP."""
        if cloud == "aws":
            self.aws.preempt(AWS_REGION, instance_id)
        elif cloud == "gcp":
            zone, _, name = instance_id.partition("/")
            self.gcp.preempt(zone, name)
        elif cloud == "azure":
            self.azure.state.evict(instance_id)
        else:
            raise ValueError(f"cloud must be one of {', '.join(CLOUDS)}, not {cloud!r}")

    # ------------------------------------------------------------ reading back

    def _ec2(self) -> Any:
        return boto3.client("ec2", region_name=AWS_REGION, endpoint_url=self.aws.url)

    async def _aws(self, service: str | None) -> tuple[list[dict[str, str]], list[str]]:
        """(tags of live instances, names of security groups) for ``service`` or any."""
        values = [service] if service else None

        def fetch() -> tuple[list[dict[str, str]], list[str]]:
            ec2 = self._ec2()
            try:
                tag_filter = (
                    {"Name": f"tag:{TAG}", "Values": values}
                    if values
                    else {"Name": "tag-key", "Values": [TAG]}
                )
                found = ec2.describe_instances(
                    Filters=[tag_filter, {"Name": "instance-state-name", "Values": AWS_LIVE_STATES}]
                )
                tags = [
                    {t["Key"]: t["Value"] for t in i.get("Tags", [])}
                    for r in found["Reservations"]
                    for i in r["Instances"]
                ]
                groups = ec2.describe_security_groups(Filters=[tag_filter])["SecurityGroups"]
                return tags, sorted(g["GroupName"] for g in groups)
            finally:
                ec2.close()

        return await asyncio.to_thread(fetch)

    def _gcp(self, service: str | None) -> list[dict[str, str]]:
        labels = [dict(i.get("labels", {})) for i in self.gcp.instances.values()]
        return [x for x in labels if TAG in x and (service is None or x[TAG] == service)]

    def _azure(self, service: str | None) -> list[dict[str, str]]:
        vms = [
            dict(r.get("tags") or {})
            for r in self.azure.state.resources.values()
            if r["type"].endswith("virtualMachines")
        ]
        return [x for x in vms if TAG in x and (service is None or x[TAG] == service)]

    async def instances(self, service: str | None = None) -> dict[str, list[dict[str, str]]]:
        """cloud -> the tags (GCP: labels) of every live instance of ``service`` (or of
        any skyctl service) that the cloud's fake holds."""
        aws, _ = await self._aws(service)
        return {"aws": aws, "gcp": self._gcp(service), "azure": self._azure(service)}

    async def leftovers(self) -> dict[str, list[str]]:
        """cloud -> everything of skyctl's still there: instances, and the network
        resources made for them (security groups, firewall rules, NICs, public IPs,
        network security groups). The shared per-region Azure virtual network is
        not counted: it belongs to no service."""
        aws_instances, aws_groups = await self._aws(None)
        return {
            "aws": [f"instance {t.get('Name', '?')}" for t in aws_instances]
            + [f"security group {g}" for g in aws_groups],
            "gcp": [f"instance {zone}/{name}" for zone, name in sorted(self.gcp.instances)]
            + [f"firewall {name}" for name in sorted(self.gcp.firewalls)],
            "azure": [
                f"{kind} {name}"
                for kind in AZURE_LEFTOVERS
                for name in self.azure.state.names(kind)
            ],
        }


class Harness:
    """A controller over ``tmp/state.db`` with the three cloud providers registered."""

    def __init__(self, fakes: CloudFakes, tmp: Path) -> None:
        self.fakes = fakes
        self.clock = fakes.clock
        self.store = Store(tmp / "state.db")
        self.providers = ProviderSet(config={}, clock=self.clock, local_state=tmp / "local")
        for provider in fakes.providers():
            self.providers.add(provider)
        self.controller = Controller(
            self.store, self.providers, self.clock, tick_seconds=1.0, gc_clouds=CLOUDS
        )
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.drive(self.controller.start())
        self.task = asyncio.create_task(self.controller.run())

    async def close(self) -> None:
        """Stop the loop, the routers and probers; close every provider and the store."""
        self.controller.request_stop()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.controller.stop(0)
        self.store.close()

    async def step(self) -> None:
        self.fakes.point_at_loopback()
        await self.clock.advance(0.25)
        for _ in range(3):  # let real I/O (SDK calls in threads, probes on loopback) go on
            await asyncio.sleep(0.005)

    async def until(self, predicate: Callable[[], bool], *, seconds: float = 900) -> None:
        """Advance fake time in small steps until ``predicate`` holds."""
        waited = 0.0
        while not predicate():
            assert waited < seconds, f"condition not reached within {seconds} fake seconds"
            await self.step()
            waited += 0.25

    async def drive(self, aw: Awaitable[T]) -> T:
        """Await ``aw`` while fake time moves (provider backoff and polling sleep on it)."""
        task = asyncio.ensure_future(aw)
        while not task.done():
            await self.step()
        return task.result()

    # ----------------------------------------------------------------- views

    def live(self, name: str) -> list[ReplicaRecord]:
        return self.store.list_replicas(name)

    def ended(self, name: str) -> list[ReplicaRecord]:
        return [
            r
            for r in self.store.list_replicas(name, include_terminated=True)
            if r.status is ReplicaStatus.TERMINATED
        ]

    def ready(self, name: str) -> list[ReplicaRecord]:
        return [r for r in self.live(name) if r.status is ReplicaStatus.READY]

    def ready_clouds(self, name: str) -> list[str]:
        return sorted(r.location.cloud for r in self.ready(name))

    async def get(self, name: str) -> int:
        """Status of a GET through the service's own endpoint (its router)."""
        svc = self.store.get_service(name)
        assert svc is not None and svc.router_port
        url = f"http://127.0.0.1:{svc.router_port}/"
        async with aiohttp.ClientSession() as s, s.get(url) as resp:
            await resp.read()
            return resp.status
