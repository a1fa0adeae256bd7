"""The simulated provider keeps the provider contract with cheap endpoints of one server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from providers.base import LaunchRequest
from providers.registry import ProviderSet
from providers.simulated import SimulatedProvider
from skyctl.clock import FakeClock, SystemClock
from skyctl.controller import Controller
from skyctl.errors import CapacityError, ConfigError, TransientError
from skyctl.lifecycle import ReplicaStatus
from skyctl.spec_yaml import parse_spec
from skyctl.store import Store
from skyctl.types import InstanceEvent, InstanceEventKind, InstanceState, Offering
from tests.helpers.waiting import eventually

SPEC = """\
name: {name}
service:
  readiness_probe:
    path: /health
    initial_delay_seconds: 60
    period_seconds: 1
  replicas: {replicas}
resources:
  cloud: simulated
  use_spot: {spot}
"""


def request(token: str, *, spot: bool = False, replica_id: int = 1) -> LaunchRequest:
    spec = parse_spec(SPEC.format(name="svc", replicas=1, spot=str(spot).lower()))
    zone = SimulatedProvider({}, clock=FakeClock()).zones[0]
    offering = Offering(zone, spot, 1.0 if spot else 3.0, "sim.small")
    return LaunchRequest("svc", replica_id, 1, offering, token, spec)


async def status_of(url: str) -> int:
    async with aiohttp.ClientSession() as s, s.get(url + "/health") as r:
        return r.status


async def test_an_instance_boots_serves_and_is_gone_once_terminated() -> None:
    clock = FakeClock()
    p = SimulatedProvider({"launch_seconds": 0, "boot_seconds": 5}, clock=clock)
    req = request("tok-1")
    try:
        inst = await p.launch(req)
        assert inst.state is InstanceState.RUNNING and inst.endpoint
        assert (await p.launch(req)).instance_id == inst.instance_id  # idempotent on the token
        assert [i.instance_id for i in await p.list_instances("svc")] == [inst.instance_id]
        assert await p.list_services() == ["svc"]
        assert await status_of(inst.endpoint) == 503  # booting
        await clock.advance(5)
        assert await status_of(inst.endpoint) == 200
        await p.terminate(inst.instance_id)
        await p.terminate(inst.instance_id)  # not found counts as done
        assert await status_of(inst.endpoint) == 404
        assert await p.list_instances("svc") == []
    finally:
        await p.close()


async def test_a_launch_takes_its_latency_on_the_clock() -> None:
    clock = FakeClock()
    p = SimulatedProvider({"launch_seconds": 10, "boot_seconds": 0}, clock=clock)
    try:
        launch = asyncio.ensure_future(p.launch(request("tok")))
        await eventually(lambda: clock.pending_sleepers > 0, "the launch under way")
        await clock.advance(9)
        assert not launch.done()
        await clock.advance(1)
        assert (await launch).state is InstanceState.RUNNING
    finally:
        await p.close()


async def test_failing_launches_say_capacity_for_spot_and_503_on_demand() -> None:
    p = SimulatedProvider({"launch_seconds": 0, "launch_failure_rate": 1}, clock=FakeClock())
    try:
        with pytest.raises(CapacityError):
            await p.launch(request("a", spot=True))
        with pytest.raises(TransientError):
            await p.launch(request("b", spot=False))
        assert await p.list_instances("svc") == []
    finally:
        await p.close()


async def test_a_spot_instance_gets_a_notice_then_is_preempted() -> None:
    clock = FakeClock()
    events: list[InstanceEvent] = []
    p = SimulatedProvider(
        {"launch_seconds": 0, "boot_seconds": 0, "preemptions_per_hour": 3600, "seed": 1},
        clock=clock,
    )
    p.set_event_sink(events.append)
    try:
        inst = await p.launch(request("tok", spot=True))
        for _ in range(200):
            await clock.advance(1)
            if any(e.kind is InstanceEventKind.PREEMPTED for e in events):
                break
        assert [e.kind for e in events] == [InstanceEventKind.NOTICE, InstanceEventKind.PREEMPTED]
        assert events[1].at == pytest.approx(events[0].at, abs=1)  # killed when the notice said
        (listed,) = await p.list_instances("svc")
        assert listed.state is InstanceState.PREEMPTED and listed.interruption_at is not None
        assert inst.endpoint and await status_of(inst.endpoint) == 404
    finally:
        await p.close()


async def test_the_endpoints_can_be_served_by_one_child_process() -> None:
    p = SimulatedProvider(
        {"launch_seconds": 0, "boot_seconds": 0, "server": "process"}, clock=SystemClock()
    )
    try:
        a = await p.launch(request("a", replica_id=1))
        b = await p.launch(request("b", replica_id=2))
        assert a.endpoint and b.endpoint
        assert a.endpoint.split("/i/")[0] == b.endpoint.split("/i/")[0]  # one server
        assert await status_of(a.endpoint) == 200
        await p.terminate(a.instance_id)
        assert await status_of(a.endpoint) == 404 and await status_of(b.endpoint) == 200
    finally:
        await p.close()
    with pytest.raises(aiohttp.ClientConnectionError):
        await status_of(b.endpoint)  # the child is gone with the provider


@pytest.mark.parametrize(
    ("section", "says"),
    [
        ({"boot_second": 1}, "simulated.boot_second: unknown key"),
        ({"launch_seconds": -1}, "simulated.launch_seconds: expected a number >= 0"),
        ({"launch_failure_rate": 2}, "simulated.launch_failure_rate: expected a share"),
        ({"server": "thread"}, "simulated.server: expected inprocess or process"),
    ],
)
def test_bad_configuration_is_one_line_naming_the_key(section: dict, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        SimulatedProvider(section, clock=FakeClock())


async def test_a_service_on_the_simulated_cloud_comes_up_through_the_controller(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    store = Store(tmp_path / "state.db")
    providers = ProviderSet(
        config={"simulated": {"launch_seconds": 1, "boot_seconds": 3}},
        clock=clock,
        local_state=tmp_path / "local",
    )
    controller = Controller(store, providers, clock, tick_seconds=1.0)
    await controller.start()
    task = asyncio.create_task(controller.run())
    try:
        await controller.create_service(SPEC.format(name="sim", replicas=5, spot="false"), None)
        for _ in range(200):
            await clock.advance(0.25)
            await asyncio.sleep(0.01)
            ready = [r for r in store.list_replicas("sim") if r.status is ReplicaStatus.READY]
            if len(ready) == 5:
                break
        assert len(ready) == 5
        assert {r.location.cloud for r in ready} == {"simulated"}
        assert len(controller.runtimes["sim"].backends) == 5
    finally:
        controller.request_stop()
        await task
        await controller.stop(0)
        store.close()


def test_skyctl_check_says_the_simulated_cloud_is_usable_or_what_is_wrong() -> None:
    from providers.simulated import check

    assert check({}) == (True, "endpoints of one local HTTP server, for measuring the controller")
    ok, message = check({"zones": "three"})
    assert not ok and message.startswith("simulated.zones: expected a whole number")
