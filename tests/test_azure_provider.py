"""The Azure provider, through the real Azure SDK, against the fake ARM server over TLS.

Every test gets a fresh fake (``tests/fakes/azure_server.py``) and a FakeClock
that a background task advances whenever someone sleeps on it (LRO polling,
backoff), so no test waits for real.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from providers.azure import AzureProvider, check, notice_watch
from providers.azure_resources import vm_state
from providers.base import LaunchRequest
from skyctl.clock import FakeClock, SystemClock
from skyctl.errors import CapacityError, ConfigError, QuotaError, TransientError
from skyctl.spec import ResourceCandidate, Resources, ServiceSpec
from skyctl.types import InstanceEvent, InstanceEventKind, InstanceState, Location, Offering
from tests.fakes.azure_server import FakeAzure, FakeCredential

T4 = "Standard_NC4as_T4_v3"
EASTUS1 = Location("azure", "eastus", "1")


class RecordingClock(FakeClock):
    """A FakeClock that remembers every sleep asked of it."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await super().sleep(seconds)


async def _advance_when_asked(clock: FakeClock) -> None:
    while True:
        if clock.pending_sleepers:
            await clock.advance(60)
        else:
            await asyncio.sleep(0.001)


@pytest.fixture
async def clock() -> AsyncIterator[RecordingClock]:
    clock = RecordingClock()
    task = asyncio.create_task(_advance_when_asked(clock))
    yield clock
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[FakeAzure]:
    async with FakeAzure(tmp_path) as server:
        yield server


def config_for(fake: FakeAzure, **extra: Any) -> dict[str, Any]:
    return fake.provider_config(**{"poll_interval_seconds": 5, **extra})  # polls wait on the clock


@pytest.fixture
async def make_provider(
    fake: FakeAzure, clock: RecordingClock
) -> AsyncIterator[Callable[..., AzureProvider]]:
    made: list[AzureProvider] = []

    def make(credential: Any = None, **extra: Any) -> AzureProvider:
        provider = AzureProvider(
            config_for(fake, **extra), clock=clock, credential=credential or FakeCredential()
        )
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.close()


@pytest.fixture
def provider(make_provider: Callable[..., AzureProvider]) -> AzureProvider:
    return make_provider()


def spec(*, spot: bool = True, **cand: Any) -> ServiceSpec:
    cand.setdefault("accelerators", {"T4": 1})
    candidate = ResourceCandidate(cloud="azure", use_spot=spot, **cand)
    return ServiceSpec(
        name="svc",
        resources=Resources(candidates=(candidate,), use_spot=spot),
        setup="echo setting up",
        run="python3 -m http.server $PORT",
    )


def request(
    replica: int = 1,
    *,
    spot: bool = True,
    location: Location = EASTUS1,
    token: str | None = None,
    service: str = "svc",
    the_spec: ServiceSpec | None = None,
) -> LaunchRequest:
    return LaunchRequest(
        service=service,
        replica_id=replica,
        version=2,
        offering=Offering(location, spot, 0.05 if spot else 0.526, T4, "T4:1"),
        client_token=token or f"{service}-{replica}-1",
        spec=the_spec or spec(spot=spot),
        port=8080,
    )


def leftovers(fake: FakeAzure) -> dict[str, list[str]]:
    kinds = ("virtualMachines", "networkInterfaces", "publicIPAddresses", "networkSecurityGroups")
    return {k: fake.state.names(k) for k in kinds if fake.state.names(k)}


# ---- offerings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cand", "types"),
    [
        ({"accelerators": {"T4": 4}}, {"Standard_NC64as_T4_v3"}),
        ({"accelerators": {"A100-80GB": 8}}, {"Standard_ND96amsr_A100_v4"}),
        ({"accelerators": None, "cpus": "32+"}, {"Standard_D32s_v5"}),
        ({"accelerators": None, "instance_type": "Standard_E8s_v5"}, {"Standard_E8s_v5"}),
    ],
)
async def test_offerings_are_the_catalog_types_that_fit_per_region_zone_spot_and_ondemand(
    make_provider: Callable[..., AzureProvider], cand: dict[str, Any], types: set[str]
) -> None:
    provider = make_provider(regions=["eastus", "westeurope"], zones=["1", "2"])
    offers = await provider.offerings(spec(**cand))
    assert {o.instance_type for o in offers} == types
    assert {(o.location.region, o.location.zone) for o in offers} == {
        (r, z) for r in ("eastus", "westeurope") for z in ("1", "2")
    }
    for o in offers:
        twin = next(x for x in offers if x.location == o.location and x.spot != o.spot)
        assert (o.price < twin.price) == o.spot  # spot is the cheaper of the pair


async def test_a_zone_in_resources_pins_the_offerings_to_it(provider: AzureProvider) -> None:
    offers = await provider.offerings(spec(region="westus2", zone="3"))
    assert offers and {str(o.location) for o in offers} == {"azure/westus2/3"}


# ---- launch -----------------------------------------------------------------------------------


@pytest.mark.parametrize("spot", [True, False], ids=["spot", "on-demand"])
async def test_launch_creates_a_vm_of_the_offering_with_the_right_priority(
    provider: AzureProvider, fake: FakeAzure, spot: bool
) -> None:
    inst = await provider.launch(request(spot=spot))
    assert inst.state is InstanceState.RUNNING
    assert inst.spot is spot and inst.location == EASTUS1
    assert inst.endpoint is not None and inst.endpoint.endswith(":8080")
    vm = fake.state.find("virtualMachines", inst.instance_id)
    assert vm is not None
    props = vm["properties"]
    assert props["hardwareProfile"]["vmSize"] == T4
    assert vm["zones"] == ["1"] and vm["location"] == "eastus"
    if spot:
        assert props["priority"] == "Spot"
        assert props["evictionPolicy"] == "Delete"
        assert props["billingProfile"] == {"maxPrice": -1}
    else:
        assert props["priority"] == "Regular"
        assert "evictionPolicy" not in props and "billingProfile" not in props


async def test_custom_data_is_the_bootstrap_with_port_replica_and_the_notice_watch(
    provider: AzureProvider, fake: FakeAzure
) -> None:
    inst = await provider.launch(request(replica=4))
    vm = fake.state.find("virtualMachines", inst.instance_id)
    assert vm is not None
    script = base64.b64decode(fake.state.custom_data[vm["id"].lower()]).decode()
    assert "export PORT=8080" in script and "export SKYCTL_REPLICA_ID=4" in script
    assert "python3 -m http.server $PORT" in script
    assert "scheduledevents" in script and inst.instance_id in script


async def test_every_resource_of_a_replica_carries_service_replica_and_version_tags(
    provider: AzureProvider, fake: FakeAzure
) -> None:
    inst = await provider.launch(request(replica=3))
    for kind, name in [
        ("virtualMachines", inst.instance_id),
        ("networkInterfaces", f"{inst.instance_id}-nic"),
        ("publicIPAddresses", f"{inst.instance_id}-ip"),
    ]:
        res = fake.state.find(kind, name)
        assert res is not None, kind
        assert res["tags"]["skyctl-service"] == "svc"
        assert res["tags"]["skyctl-replica"] == "3"
        assert res["tags"]["skyctl-version"] == "2"


async def test_the_security_group_opens_only_the_service_port(
    provider: AzureProvider, fake: FakeAzure
) -> None:
    await provider.launch(request())
    (nsg_name,) = fake.state.names("networkSecurityGroups")
    nsg = fake.state.find("networkSecurityGroups", nsg_name)
    assert nsg is not None
    rules = nsg["properties"]["securityRules"]
    assert [(r["properties"]["direction"], r["properties"]["access"]) for r in rules] == [
        ("Inbound", "Allow")
    ]
    assert rules[0]["properties"]["destinationPortRange"] == "8080"
    assert rules[0]["properties"]["protocol"] == "Tcp"


async def test_launching_twice_with_one_client_token_yields_one_vm(
    provider: AzureProvider, fake: FakeAzure
) -> None:
    first = await provider.launch(request(token="tok-a"))
    again = await provider.launch(request(token="tok-a"))
    assert again.instance_id == first.instance_id
    assert fake.state.names("virtualMachines") == [first.instance_id]
    assert fake.calls("PUT", "/virtualMachines/") == 1
    other = await provider.launch(request(token="tok-b"))
    assert other.instance_id != first.instance_id


@pytest.mark.parametrize(
    ("code", "sync"),
    [
        ("ZonalAllocationFailed", False),
        ("AllocationFailed", False),
        ("OverconstrainedAllocationRequest", False),
        ("SkuNotAvailable", True),
    ],
)
async def test_an_allocation_failure_is_a_capacity_error_naming_the_location_and_leaves_nothing(
    provider: AzureProvider, fake: FakeAzure, code: str, sync: bool
) -> None:
    fake.state.fail_allocation("eastus", "1", code, sync=sync)
    with pytest.raises(CapacityError) as err:
        await provider.launch(request())
    assert err.value.location == "azure/eastus/1"
    assert code in str(err.value)
    assert leftovers(fake) == {}
    # another zone of the same region still has capacity
    inst = await provider.launch(request(location=Location("azure", "eastus", "2"), token="t2"))
    assert inst.state is InstanceState.RUNNING


async def test_a_quota_refusal_is_a_quota_error(provider: AzureProvider, fake: FakeAzure) -> None:
    fake.state.exceed_quota("eastus")
    with pytest.raises(QuotaError, match="quota"):
        await provider.launch(request())
    assert leftovers(fake) == {}


@pytest.mark.parametrize(
    ("settings", "hint"),
    [
        ({"credential": FakeCredential("wrong-token")}, "az login"),
        ({"resource_group": "no-such-group"}, "azure.resource_group"),
    ],
)
async def test_rejected_credentials_or_a_missing_resource_group_are_config_errors(
    make_provider: Callable[..., AzureProvider], settings: dict[str, Any], hint: str
) -> None:
    provider = make_provider(**settings)
    with pytest.raises(ConfigError, match=hint):
        await provider.list_instances("svc")


async def test_a_bad_image_id_is_a_config_error_naming_the_key(provider: AzureProvider) -> None:
    with pytest.raises(ConfigError, match=r"resources\.image_id"):
        await provider.launch(request(the_spec=spec(image_id="ubuntu")))


async def test_a_boot_script_too_big_for_custom_data_is_refused_before_any_call(
    provider: AzureProvider, fake: FakeAzure
) -> None:
    big = ServiceSpec(name="svc", resources=spec().resources, run="echo " + "x" * 70_000)
    with pytest.raises(ConfigError, match="custom data"):
        await provider.launch(request(the_spec=big))
    assert fake.calls("PUT") == 0


async def test_the_fakes_provider_config_works_on_a_real_clock(fake: FakeAzure) -> None:
    provider = AzureProvider(
        fake.provider_config(), clock=SystemClock(), credential=FakeCredential()
    )
    try:
        inst = await provider.launch(request())
        assert inst.state is InstanceState.RUNNING
        await provider.terminate(inst.instance_id)
        assert leftovers(fake) == {}
    finally:
        await provider.close()


# ---- list -------------------------------------------------------------------------------------


async def test_listing_finds_instances_by_tag_not_from_memory(
    make_provider: Callable[..., AzureProvider], fake: FakeAzure
) -> None:
    fake.page_size = 1  # and follows nextLink pages
    launcher = make_provider()
    a = await launcher.launch(request(1))
    b = await launcher.launch(request(2))
    await launcher.launch(request(1, service="other"))
    fresh = make_provider()  # knows nothing of the launches
    listed = await fresh.list_instances("svc")
    assert [(i.instance_id, i.replica_id) for i in listed] == [
        (a.instance_id, 1),
        (b.instance_id, 2),
    ]
    assert all(i.state is InstanceState.RUNNING and i.endpoint for i in listed)
    assert listed[0].endpoint == a.endpoint
    assert await fresh.list_services() == ["other", "svc"]


# ---- terminate --------------------------------------------------------------------------------


async def test_terminate_removes_vm_nic_ip_and_the_last_security_group(
    provider: AzureProvider, fake: FakeAzure
) -> None:
    a = await provider.launch(request(1))
    b = await provider.launch(request(2))
    await provider.terminate(a.instance_id)
    assert fake.state.names("virtualMachines") == [b.instance_id]
    assert fake.state.names("networkInterfaces") == [f"{b.instance_id}-nic"]
    assert fake.state.names("publicIPAddresses") == [f"{b.instance_id}-ip"]
    assert len(fake.state.names("networkSecurityGroups")) == 1  # still used by b
    await provider.terminate(b.instance_id)
    assert leftovers(fake) == {}
    assert await provider.list_instances("svc") == []


@pytest.mark.parametrize("instance_id", ["sky-svc-r1-0123456789", "not an id"])
async def test_terminating_what_does_not_exist_is_done(
    provider: AzureProvider, instance_id: str
) -> None:
    await provider.terminate(instance_id)


# ---- preemption -------------------------------------------------------------------------------


async def test_an_evicted_spot_vm_is_preempted_once_then_terminate_clears_its_leftovers(
    provider: AzureProvider, fake: FakeAzure
) -> None:
    events: list[InstanceEvent] = []
    provider.set_event_sink(events.append)
    inst = await provider.launch(request())
    fake.state.evict(inst.instance_id)
    assert fake.state.names("virtualMachines") == []
    (listed,) = await provider.list_instances("svc")
    assert listed.instance_id == inst.instance_id and listed.state is InstanceState.PREEMPTED
    assert listed.location == EASTUS1 and listed.replica_id == 1
    await provider.list_instances("svc")
    assert [(e.kind, e.instance_id) for e in events] == [
        (InstanceEventKind.PREEMPTED, inst.instance_id)
    ]
    await provider.terminate(inst.instance_id)
    assert leftovers(fake) == {}
    assert await provider.list_instances("svc") == []


async def test_a_deallocated_spot_vm_is_preempted(provider: AzureProvider, fake: FakeAzure) -> None:
    inst = await provider.launch(request())
    fake.state.evict(inst.instance_id, deallocate=True)
    (listed,) = await provider.list_instances("svc")
    assert listed.state is InstanceState.PREEMPTED and listed.endpoint is None


@pytest.mark.parametrize(
    ("provisioning", "power", "spot", "state"),
    [
        ("Succeeded", "running", True, InstanceState.RUNNING),
        ("Creating", "", True, InstanceState.PENDING),
        ("Succeeded", "starting", False, InstanceState.PENDING),
        ("Succeeded", "deallocated", True, InstanceState.PREEMPTED),
        ("Succeeded", "deallocating", True, InstanceState.PREEMPTED),
        ("Succeeded", "deallocated", False, InstanceState.FAILED),
        ("Succeeded", "stopped", False, InstanceState.FAILED),
        ("Succeeded", "stopped", True, InstanceState.FAILED),
        ("Failed", "", True, InstanceState.FAILED),
    ],
)
def test_vm_state_from_provisioning_and_power_state(
    provisioning: str, power: str, spot: bool, state: InstanceState
) -> None:
    statuses = [{"code": f"PowerState/{power}"}] if power else []
    vm = {"properties": {"provisioningState": provisioning, "instanceView": {"statuses": statuses}}}
    assert vm_state(vm, spot=spot)[0] is state


# ---- throttling -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "method", "path"),
    [
        (429, "PUT", "/virtualMachines/"),
        (503, "GET", "/operations/"),
        (429, "GET", "/publicIPAddresses"),
    ],
)
async def test_throttling_and_unavailability_are_retried_with_backoff(
    make_provider: Callable[..., AzureProvider],
    fake: FakeAzure,
    clock: RecordingClock,
    status: int,
    method: str,
    path: str,
) -> None:
    provider = make_provider(poll_interval_seconds=0)  # so every non-zero sleep is a backoff
    await provider.launch(request(1))
    clock.sleeps.clear()
    fake.throttle(2, status=status, method=method, path_contains=path, retry_after=3)
    inst = await provider.launch(request(2))
    assert inst.state is InstanceState.RUNNING
    assert fake.throttled == 2
    assert [s for s in clock.sleeps if s > 0] == [3.0, 3.0]  # Retry-After honoured
    assert fake.state.names("virtualMachines") == sorted(
        [inst.instance_id, (await provider.list_instances("svc"))[0].instance_id]
    )


async def test_persistent_throttling_gives_up_after_bounded_attempts_with_a_transient_error(
    make_provider: Callable[..., AzureProvider], fake: FakeAzure, clock: RecordingClock
) -> None:
    provider = make_provider(max_attempts=3)
    fake.throttle(100, status=429, method="GET", retry_after=1)
    with pytest.raises(TransientError, match="after 3 attempts"):
        await provider.list_instances("svc")
    assert fake.throttled == 3
    assert len(clock.sleeps) == 2 and all(1 <= s <= 30 for s in clock.sleeps)


def test_backoff_is_full_jitter_capped_and_honours_retry_after(provider: AzureProvider) -> None:
    waits = [provider.arm.backoff(attempt, 0.0) for attempt in range(10) for _ in range(20)]
    assert all(0.0 <= w <= 30.0 for w in waits)
    assert len({round(w, 6) for w in waits}) > 100  # jittered, not fixed
    assert all(provider.arm.backoff(0, 7.0) >= 7.0 for _ in range(20))


# ---- configuration, check, import guard, notice watch -------------------------------------------


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({}, "azure.subscription_id"),
        ({"subscription_id": "s", "regoins": ["eastus"]}, "azure.regoins"),
        ({"subscription_id": "s", "base_url": "http://127.0.0.1:1"}, "azure.base_url"),
        ({"subscription_id": "s", "cloud": "MARS"}, "azure.cloud"),
        ({"subscription_id": "s", "max_attempts": 0}, "azure.max_attempts"),
        ({"subscription_id": "s", "ca_bundle": "/nonexistent/ca.pem"}, "azure.ca_bundle"),
    ],
)
def test_bad_configuration_is_a_one_line_error_naming_the_key(
    section: dict[str, Any], key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID", raising=False)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as err:
        AzureProvider(section, clock=FakeClock())
    assert "\n" not in str(err.value)
    ok, message = check(section)
    assert not ok and key in message


class _SyncCredential:
    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def get_token(self, *scopes: str) -> object:
        if self.fail:
            raise RuntimeError("secret-looking detail that must not be shown")
        return object()


@pytest.mark.parametrize("fail", [False, True])
def test_check_says_whether_credentials_work_without_showing_details(fail: bool) -> None:
    ok, message = check({"subscription_id": "sub-1"}, credential=_SyncCredential(fail))
    assert ok is not fail
    assert "secret-looking" not in message
    assert ("az login" in message) is fail


async def test_the_notice_watch_writes_the_announced_eviction_time(tmp_path: Path) -> None:
    event = {
        "DocumentIncarnation": 1,
        "Events": [
            {
                "EventId": "A1",
                "EventType": "Preempt",
                "ResourceType": "VirtualMachine",
                "Resources": ["sky-svc-r1-abc"],
                "EventStatus": "Scheduled",
                "NotBefore": "Mon, 19 Sep 2016 18:29:47 GMT",
            }
        ],
    }
    seen: list[str] = []

    async def events(req: web.Request) -> web.Response:
        seen.append(req.headers.get("Metadata", ""))
        return web.json_response(
            event if len(seen) > 1 else {"DocumentIncarnation": 0, "Events": []}
        )

    app = web.Application()
    app.router.add_get("/metadata/scheduledevents", events)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        notice = tmp_path / "notice"
        env = {
            "PATH": "/usr/bin:/bin",
            "SKYCTL_NOTICE_FILE": str(notice),
            "SKYCTL_SCHEDULED_EVENTS_URL": f"http://127.0.0.1:{port}/metadata/scheduledevents",
            "SKYCTL_NOTICE_POLL_SECONDS": "0.05",
        }
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", notice_watch("sky-svc-r1-abc"), env=env, stdout=asyncio.subprocess.DEVNULL
        )
        try:
            await asyncio.wait_for(proc.wait(), timeout=20)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert notice.read_text().strip() == "1474309787"
        assert seen[:2] == ["true", "true"]
    finally:
        await runner.cleanup()
