"""The GCP provider through the real google-cloud-compute client, over HTTP, against
the fake Compute Engine API in tests/fakes/gcp_server.py."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

from providers.base import LaunchRequest
from providers.gcp import GCPProvider, check
from providers.gcp_build import (
    NOTICE_WATCH,
    instance_name,
    label_value,
    request_id,
    service_tag,
    split_instance_id,
    state_of,
)
from skyctl.clock import FakeClock
from skyctl.errors import CapacityError, ConfigError, QuotaError, TransientError
from skyctl.spec import ResourceCandidate, Resources, ServiceSpec
from skyctl.types import InstanceEvent, InstanceEventKind, InstanceState, Location, Offering
from tests.fakes.gcp_server import FakeComputeEngine

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
ZONE = "us-central1-a"
LOC = Location("gcp", "us-central1", ZONE)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeComputeEngine]:
    server = FakeComputeEngine(now=clock.now)
    await server.start()
    yield server
    await server.stop()


def _config(fake: FakeComputeEngine, **extra: Any) -> dict[str, Any]:
    return {
        "project": "proj",
        "api_endpoint": fake.endpoint,
        "credentials": "anonymous",
        "regions": ["us-central1", "us-east1"],
        **extra,
    }


@pytest.fixture
async def provider(fake: FakeComputeEngine, clock: FakeClock) -> AsyncIterator[GCPProvider]:
    p = GCPProvider(_config(fake), clock=clock)
    yield p
    await p.close()


@pytest.fixture
def events(provider: GCPProvider) -> list[InstanceEvent]:
    got: list[InstanceEvent] = []
    provider.set_event_sink(got.append)
    return got


def _spec(name: str = "svc", *, spot: bool = True, **cand: Any) -> ServiceSpec:
    cand.setdefault("cloud", "gcp")
    candidate = ResourceCandidate(use_spot=spot, **cand)
    return ServiceSpec(
        name=name,
        resources=Resources(candidates=(candidate,), use_spot=spot),
        run="python -m http.server $PORT",
    )


def _request(
    *,
    service: str = "svc",
    replica_id: int = 1,
    spot: bool = True,
    instance_type: str = "n2-standard-2",
    accelerators: str = "",
    token: str | None = None,
    zone: str = ZONE,
    port: int = 8080,
) -> LaunchRequest:
    loc = Location("gcp", zone.rsplit("-", 1)[0], zone)
    return LaunchRequest(
        service=service,
        replica_id=replica_id,
        version=3,
        offering=Offering(loc, spot, 0.02, instance_type, accelerators),
        client_token=token or f"{service}-{replica_id}-{uuid.uuid4()}",
        spec=_spec(service, spot=spot),
        port=port,
        envs={"MODEL": "tiny 'quoted'"},
    )


async def _with_clock(clock: FakeClock, work: Awaitable[T]) -> T:
    """Run ``work`` while moving the fake clock, so backoff sleeps end at once."""
    task = asyncio.ensure_future(work)
    while not task.done():
        await asyncio.wait({task}, timeout=0.02)
        await clock.advance(60)
    return task.result()


# ------------------------------------------------------------------ offerings


async def test_offerings_list_spot_and_ondemand_in_each_zone_selling_the_type(
    provider: GCPProvider,
) -> None:
    offers = await provider.offerings(_spec(accelerators={"L4": 1}, region="us-central1"))
    spot = {o.location.zone for o in offers if o.spot and o.instance_type == "g2-standard-4"}
    assert spot == {"us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"}
    g2 = [o for o in offers if o.instance_type == "g2-standard-4" and o.location == LOC]
    assert sorted((o.spot, o.price) for o in g2) == [(False, 0.7069), (True, 0.2827)]
    assert all(o.accelerators == "L4:1" for o in offers)


async def test_offerings_skip_zones_without_the_machine_type_or_its_gpu(
    fake: FakeComputeEngine, provider: GCPProvider
) -> None:
    fake.machine_types["us-central1-b"].discard("g2-standard-4")
    fake.accelerator_types["us-central1-c"].discard("nvidia-tesla-t4")
    l4 = await provider.offerings(_spec(accelerators={"L4": 1}, instance_type="g2-standard-4"))
    t4 = await provider.offerings(_spec(accelerators={"T4": 1}, region="us-central1"))
    assert "us-central1-b" not in {o.location.zone for o in l4}
    assert {o.location.zone for o in t4} == {"us-central1-a", "us-central1-b", "us-central1-f"}


async def test_offerings_of_an_ondemand_spec_are_ondemand_only_and_honour_zone(
    provider: GCPProvider,
) -> None:
    offers = await provider.offerings(_spec(spot=False, cpus="4+", zone="us-east1-c"))
    assert offers and all(not o.spot for o in offers)
    assert {o.location for o in offers} == {Location("gcp", "us-east1", "us-east1-c")}
    assert offers[0].instance_type == "e2-standard-4"  # cheapest first


async def test_offerings_ignore_candidates_of_other_clouds(provider: GCPProvider) -> None:
    assert await provider.offerings(_spec(cloud="aws")) == []


# --------------------------------------------------------------------- launch


async def test_spot_launch_asks_for_spot_deleted_on_preemption_with_labels_and_boot_script(
    fake: FakeComputeEngine, provider: GCPProvider
) -> None:
    inst = await provider.launch(_request(spot=True, port=9000))
    zone, name = split_instance_id(inst.instance_id)
    body = fake.instance(zone, name)
    assert body["scheduling"]["provisioningModel"] == "SPOT"
    assert body["scheduling"]["instanceTerminationAction"] == "DELETE"
    assert body["labels"] | {"skyctl-token": "-"} == {
        "skyctl-service": "svc",
        "skyctl-replica": "1",
        "skyctl-version": "3",
        "skyctl-port": "9000",
        "skyctl-token": "-",
    }
    script = {i["key"]: i["value"] for i in body["metadata"]["items"]}["startup-script"]
    assert "export SKYCTL_REPLICA_ID=1" in script and "export PORT=9000" in script
    assert "export MODEL='tiny '\"'\"'quoted'\"'\"''" in script
    assert "metadata.google.internal" in script  # the preemption notice watcher
    assert inst.state is InstanceState.RUNNING and inst.spot
    nat = body["networkInterfaces"][0]["accessConfigs"][0]["natIP"]
    assert inst.endpoint == f"http://{nat}:9000"
    assert inst.location == LOC and inst.replica_id == 1 and inst.version == 3


async def test_ondemand_gpu_launch_is_standard_and_attaches_n1_gpus(
    fake: FakeComputeEngine, provider: GCPProvider
) -> None:
    inst = await provider.launch(
        _request(spot=False, instance_type="n1-standard-4", accelerators="T4:1")
    )
    body = fake.instance(*split_instance_id(inst.instance_id))
    assert body["scheduling"] == {
        "provisioningModel": "STANDARD",
        "automaticRestart": True,
        "onHostMaintenance": "TERMINATE",
    }
    assert body["guestAccelerators"] == [
        {"acceleratorType": f"zones/{ZONE}/acceleratorTypes/nvidia-tesla-t4", "acceleratorCount": 1}
    ]
    assert not inst.spot and inst.price == 0.54


async def test_launch_uses_the_specs_image_disk_and_labels(
    fake: FakeComputeEngine, provider: GCPProvider
) -> None:
    spec = _spec(image_id="projects/p/global/images/mine", disk_size=250, labels={"Team": "ML"})
    req = replace(_request(), spec=spec)
    body = fake.instance(*split_instance_id((await provider.launch(req)).instance_id))
    params = body["disks"][0]["initializeParams"]
    assert (params["sourceImage"], params["diskSizeGb"]) == ("projects/p/global/images/mine", "250")
    assert body["labels"]["team"] == "ml"


async def test_launch_opens_only_the_service_port_to_the_service_tag(
    fake: FakeComputeEngine, provider: GCPProvider
) -> None:
    inst = await provider.launch(_request(port=8123))
    (rule,) = fake.firewalls.values()
    assert rule["allowed"] == [{"IPProtocol": "tcp", "ports": ["8123"]}]
    assert rule["direction"] == "INGRESS" and rule["sourceRanges"] == ["0.0.0.0/0"]
    tags = fake.instance(*split_instance_id(inst.instance_id))["tags"]["items"]
    assert rule["targetTags"] == tags == [service_tag("svc")]


async def test_launch_with_the_same_token_yields_one_instance(
    fake: FakeComputeEngine, provider: GCPProvider
) -> None:
    req = _request(token="token-1")
    first = await provider.launch(req)
    second = await provider.launch(req)
    assert (ZONE, request_id("token-1")) in fake.request_ids  # GCP de-duplicated the retry
    fake.request_ids.clear()  # past GCP's requestId memory: the name still matches
    third = await provider.launch(req)
    assert first.instance_id == second.instance_id == third.instance_id
    assert len(fake.instances) == 1
    inserts = [p for m, p in fake.requests if m == "POST" and p.endswith("/instances")]
    assert len(inserts) == 3


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("ZONE_RESOURCE_POOL_EXHAUSTED", CapacityError),
        ("ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", CapacityError),
        ("QUOTA_EXCEEDED", QuotaError),
        ("RESOURCE_OPERATION_RATE_EXCEEDED", TransientError),
    ],
)
async def test_insert_operation_errors_become_typed_errors_with_the_location(
    fake: FakeComputeEngine, provider: GCPProvider, code: str, error: type[Exception]
) -> None:
    fake.exhaust(ZONE, code=code)
    with pytest.raises(error) as info:
        await provider.launch(_request())
    assert type(info.value) is error
    assert info.value.location == str(LOC)  # type: ignore[attr-defined]
    assert code in str(info.value)
    assert fake.instances == {}


async def test_capacity_exhaustion_of_spot_only_still_allows_ondemand(
    fake: FakeComputeEngine, provider: GCPProvider
) -> None:
    fake.exhaust(ZONE, spot_only=True)
    with pytest.raises(CapacityError):
        await provider.launch(_request(spot=True))
    assert (
        await provider.launch(_request(spot=False, replica_id=2))
    ).state is InstanceState.RUNNING


async def test_transient_503s_are_retried_with_backoff_on_the_clock(
    fake: FakeComputeEngine, provider: GCPProvider, clock: FakeClock
) -> None:
    fake.fail_next(2, status=503, path_contains="/instances")
    start = clock.now()
    inst = await _with_clock(clock, provider.launch(_request()))
    assert inst.state is InstanceState.RUNNING
    assert clock.now() > start  # it waited, on the fake clock
    assert len(fake.instances) == 1


async def test_persistent_throttling_ends_in_transient_error(
    fake: FakeComputeEngine, provider: GCPProvider, clock: FakeClock
) -> None:
    fake.fail_next(50, status=429, path_contains="/aggregated/instances")
    with pytest.raises(TransientError, match="after 5 attempts"):
        await _with_clock(clock, provider.list_instances("svc"))


@pytest.mark.parametrize(
    ("status", "reason", "error"),
    [
        (403, "quotaExceeded", QuotaError),
        (403, "rateLimitExceeded", TransientError),
        (403, "forbidden", ConfigError),
        (401, "", ConfigError),
        (400, "", ConfigError),
    ],
)
async def test_http_errors_of_an_insert_become_typed_errors(
    fake: FakeComputeEngine,
    provider: GCPProvider,
    clock: FakeClock,
    status: int,
    reason: str,
    error: type[Exception],
) -> None:
    fake.fail_next(10, status=status, reason=reason, path_contains=f"/zones/{ZONE}/instances")
    with pytest.raises(error) as info:
        await _with_clock(clock, provider.launch(_request()))
    assert type(info.value) is error and "\n" not in str(info.value)


# ------------------------------------------------------------- list/terminate


async def test_list_instances_finds_the_service_by_label_only(
    fake: FakeComputeEngine, provider: GCPProvider
) -> None:
    a = await provider.launch(_request(service="My.Svc", replica_id=1))
    b = await provider.launch(_request(service="my-svc", replica_id=2))
    fresh = GCPProvider(_config(fake), clock=FakeClock())  # nothing in memory
    try:
        assert [i.instance_id for i in await fresh.list_instances("My.Svc")] == [a.instance_id]
        assert [i.instance_id for i in await fresh.list_instances("my-svc")] == [b.instance_id]
        assert await fresh.list_services() == ["My.Svc", "my-svc"]
    finally:
        await fresh.close()
    assert label_value("My.Svc") == "my-svc"  # same label, told apart by metadata


async def test_terminate_deletes_and_not_found_counts_as_done(
    fake: FakeComputeEngine, provider: GCPProvider
) -> None:
    inst = await provider.launch(_request())
    await provider.terminate(inst.instance_id)
    assert (
        "DELETE",
        f"/compute/v1/projects/proj/zones/{inst.instance_id.replace('/', '/instances/')}",
    ) in fake.requests
    assert await provider.list_instances("svc") == []
    assert fake.instances == {}
    await provider.terminate(inst.instance_id)  # already gone: no error
    await provider.terminate("us-central1-a/never-existed")
    await provider.terminate("not-an-id")


async def test_firewall_rule_goes_with_the_last_instance(
    fake: FakeComputeEngine, provider: GCPProvider
) -> None:
    a = await provider.launch(_request(replica_id=1))
    b = await provider.launch(_request(replica_id=2))
    await provider.terminate(a.instance_id)
    assert len(fake.firewalls) == 1
    await provider.terminate(b.instance_id)
    assert fake.firewalls == {}
    await provider.launch(_request(replica_id=3))  # recreated for the next launch
    assert len(fake.firewalls) == 1


# ----------------------------------------------------------------- preemption


@pytest.mark.parametrize("stage", ["terminated", "deleted"])
async def test_preemption_is_reported_and_pushed_once(
    fake: FakeComputeEngine, provider: GCPProvider, events: list[InstanceEvent], stage: str
) -> None:
    inst = await provider.launch(_request())
    fake.preempt(*split_instance_id(inst.instance_id), stage=stage)
    for _ in range(2):
        (listed,) = await provider.list_instances("svc")
        assert listed.state is InstanceState.PREEMPTED
        assert listed.instance_id == inst.instance_id and listed.replica_id == 1
    assert [(e.kind, e.instance_id) for e in events] == [
        (InstanceEventKind.PREEMPTED, inst.instance_id)
    ]
    await provider.terminate(inst.instance_id)
    assert await provider.list_instances("svc") == []


async def test_preemption_notice_reports_the_kill_time_before_the_vm_stops(
    fake: FakeComputeEngine,
    provider: GCPProvider,
    events: list[InstanceEvent],
    clock: FakeClock,
) -> None:
    inst = await provider.launch(_request())
    fake.preempt(*split_instance_id(inst.instance_id), stage="notice")
    (listed,) = await provider.list_instances("svc")
    assert listed.state is InstanceState.RUNNING
    assert listed.interruption_at == pytest.approx(clock.now() + 30, abs=0.01)
    assert [e.kind for e in events] == [InstanceEventKind.NOTICE]
    await clock.advance(31)
    (later,) = await provider.list_instances("svc")
    assert later.state is InstanceState.PREEMPTED
    assert [e.kind for e in events] == [InstanceEventKind.NOTICE, InstanceEventKind.PREEMPTED]


async def test_host_maintenance_that_stops_a_spot_vm_is_a_notice(
    fake: FakeComputeEngine, provider: GCPProvider, events: list[InstanceEvent], clock: FakeClock
) -> None:
    inst = await provider.launch(_request())
    fake.schedule_maintenance(*split_instance_id(inst.instance_id), start=clock.now() + 600)
    (listed,) = await provider.list_instances("svc")
    assert listed.state is InstanceState.RUNNING
    assert listed.interruption_at == pytest.approx(clock.now() + 600, abs=0.01)
    assert [e.kind for e in events] == [InstanceEventKind.NOTICE]


# --------------------------------------------------------- config and naming


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"projekt": "x"}, "gcp.projekt: unknown key"),
        ({"regions": "us-central1"}, "gcp.regions: expected a list"),
        ({"credentials": "magic"}, "gcp.credentials: expected default or anonymous"),
        ({"credentials": "anonymous"}, "gcp.project: not set"),
    ],
)
def test_bad_config_is_a_one_line_config_error(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        GCPProvider(config, clock=FakeClock())


def test_check_says_what_to_configure_without_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    ok, message = check({"project": "p"})
    assert not ok and "GOOGLE_APPLICATION_CREDENTIALS" in message
    assert check({"credentials": "anonymous"})[0]
    assert check({"bogus": 1}) == (False, check({"bogus": 1})[1])
    assert "gcp.bogus" in check({"bogus": 1})[1]


@pytest.mark.parametrize("service", ["svc", "My.Svc_2", "x" * 80, "--", "Ünïcode"])
def test_names_are_valid_gcp_names_and_deterministic(service: str) -> None:
    name = instance_name(service, 12, "tok")
    assert re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", name), name
    assert name == instance_name(service, 12, "tok") != instance_name(service, 12, "tok2")
    assert re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", service_tag(service))
    assert re.fullmatch(r"[a-z0-9_-]{0,63}", label_value(service))
    assert uuid.UUID(request_id("tok")) == uuid.UUID(request_id("tok"))
    assert request_id("tok") != request_id("tok2")


@pytest.mark.parametrize(
    ("status", "spot", "preempted", "deleting", "state"),
    [
        ("PROVISIONING", True, False, False, InstanceState.PENDING),
        ("STAGING", False, False, False, InstanceState.PENDING),
        ("RUNNING", True, False, False, InstanceState.RUNNING),
        ("STOPPING", True, False, True, InstanceState.TERMINATED),
        ("STOPPING", True, True, False, InstanceState.PREEMPTED),
        ("TERMINATED", True, False, False, InstanceState.PREEMPTED),
        ("TERMINATED", False, False, False, InstanceState.FAILED),
        ("SUSPENDED", False, False, False, InstanceState.FAILED),
        ("STOPPING", False, False, False, InstanceState.FAILED),
    ],
)
def test_gcp_status_maps_to_our_state(
    status: str, spot: bool, preempted: bool, deleting: bool, state: InstanceState
) -> None:
    assert state_of(status, spot=spot, preempted=preempted, deleting=deleting) is state


@pytest.mark.parametrize(
    ("key", "value", "lead"),
    [
        ("instance/preempted", "TRUE", 30),
        ("instance/maintenance-event", "TERMINATE_ON_HOST_MAINTENANCE", 60),
    ],
)
def test_notice_watcher_writes_the_kill_time_when_the_metadata_server_announces_it(
    tmp_path: Path, key: str, value: str, lead: int
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    curl = bin_dir / "curl"  # stands in for the metadata server: FALSE/NONE, except ``key``
    curl.write_text(
        f'#!/bin/bash\ncase "$*" in *{key}*) echo -n {value};; *) echo -n FALSE;; esac\n'
    )
    curl.chmod(0o755)
    notice = tmp_path / "notice"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SKYCTL_NOTICE_FILE": str(notice)}
    before = int(time.time())
    subprocess.run(["bash", "-c", NOTICE_WATCH], env=env, timeout=20, check=True)
    assert before + lead <= int(notice.read_text()) <= int(time.time()) + lead
