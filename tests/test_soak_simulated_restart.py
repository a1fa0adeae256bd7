"""Soak: simulated instances survive a controller restart, as a cloud's VMs do.

They lived only in the controller's process: a restarted (or SIGKILLed)
controller found none and recorded every replica as ``instance gone`` (spot
ones PREEMPTED, counted as preemptions; on-demand ones FAILED, counted against
the version) and relaunched them all. Now the provider keeps them in
``$SKYCTL_HOME/simulated/instances.json`` and the next one serves them again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from providers.registry import ProviderSet
from providers.simulated import STATE_FILE, SimulatedProvider
from skyctl.clock import FakeClock
from skyctl.controller import Controller
from skyctl.lifecycle import ReplicaStatus
from skyctl.store import Store
from skyctl.types import InstanceState
from tests.test_simulated_provider import SPEC, request


async def status_of(url: str) -> int:
    async with aiohttp.ClientSession() as s, s.get(url + "/health") as r:
        return r.status


async def test_a_new_provider_on_the_same_state_serves_the_instances_again(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    options = {"launch_seconds": 0, "boot_seconds": 5}
    first = SimulatedProvider(options, clock=clock, state_dir=tmp_path)
    second = SimulatedProvider(options, clock=clock, state_dir=tmp_path)
    third = SimulatedProvider(options, clock=clock, state_dir=tmp_path)
    try:
        a = await first.launch(request("tok-a", replica_id=1))
        b = await first.launch(request("tok-b", spot=True, replica_id=2))
        await clock.advance(5)
        # the first controller dies without closing anything (SIGKILL)
        listed = {i.instance_id: i for i in await second.list_instances("svc")}
        assert set(listed) == {a.instance_id, b.instance_id}
        assert {i.state for i in listed.values()} == {InstanceState.RUNNING}
        assert [await status_of(i.endpoint or "") for i in listed.values()] == [200, 200]
        assert (await second.launch(request("tok-a", replica_id=1))).instance_id == a.instance_id
        c = await second.launch(request("tok-c", replica_id=3))
        assert c.instance_id not in (a.instance_id, b.instance_id)
        await second.terminate(a.instance_id)
        assert {i.instance_id for i in await third.list_instances("svc")} == {
            b.instance_id,
            c.instance_id,
        }
        assert (tmp_path / STATE_FILE).stat().st_mode & 0o777 == 0o600
    finally:
        for p in (first, second, third):
            await p.close()


async def test_a_restarted_controller_keeps_its_simulated_replicas(tmp_path: Path) -> None:
    clock = FakeClock()
    store = Store(tmp_path / "state.db")
    config = {"simulated": {"launch_seconds": 1, "boot_seconds": 3}}

    def controller() -> Controller:
        providers = ProviderSet(config=config, clock=clock, local_state=tmp_path / "local")
        return Controller(store, providers, clock, tick_seconds=1.0)

    async def until_ready(c: Controller, n: int) -> list[int]:
        for _ in range(400):
            await clock.advance(0.25)
            await asyncio.sleep(0.01)
            ready = [r.replica_id for r in store.list_replicas("sim") if r.status.value == "READY"]
            if len(ready) == n and len(c.runtimes["sim"].backends) == n:
                return ready
        raise AssertionError(f"not {n} ready: {store.list_replicas('sim')}")

    old = controller()
    await old.start()
    old_task = asyncio.create_task(old.run())
    new: Controller | None = None
    new_task = None
    try:
        await old.create_service(SPEC.format(name="sim", replicas=3, spot="false"), None)
        before = await until_ready(old, 3)
        old_task.cancel()  # dies mid-loop, nothing closed (its routers too: new ports)
        await asyncio.gather(old_task, return_exceptions=True)
        for name in list(old.runtimes):
            await old._drop_runtime(name, grace_seconds=0)
        new = controller()
        await new.start()
        new_task = asyncio.create_task(new.run())
        after = await until_ready(new, 3)
        for _ in range(20):  # a few more ticks: nothing ends, nothing is launched
            await clock.advance(1)
            await asyncio.sleep(0.01)
        rows = store.list_replicas("sim", include_terminated=True)
        assert sorted(after) == sorted(before)
        assert [(r.replica_id, r.status) for r in rows] == [
            (i, ReplicaStatus.READY) for i in sorted(before)
        ]
    finally:
        if new is not None and new_task is not None:
            new.request_stop()
            await new_task
            await new.stop(0)
        await old.stop(0)
        store.close()


async def test_the_journal_stays_compact_under_churn_and_skips_a_line_a_crash_cut(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    p = SimulatedProvider({"launch_seconds": 0}, clock=clock, state_dir=tmp_path)
    try:
        kept = await p.launch(request("tok-kept", replica_id=1))
        for i in range(2, 700):  # launched and terminated: 1,400 changes
            inst = await p.launch(request(f"tok-{i}", replica_id=i))
            await p.terminate(inst.instance_id)
        journal = tmp_path / STATE_FILE
        assert len(journal.read_text().splitlines()) <= 2 * 1 + 1024 + 1
        with journal.open("a") as f:
            f.write('{"instance_id": "sim-99')  # the controller died mid-write
    finally:
        await p.close()
    again = SimulatedProvider({}, clock=clock, state_dir=tmp_path)
    try:
        assert [i.instance_id for i in await again.list_instances("svc")] == [kept.instance_id]
    finally:
        await again.close()
