"""Actuation off the tick, specified with a fake clock and an in-process provider.

The tick observes, plans and records intents; launches and terminations run as
per-replica tasks under per-call deadlines. So a provider call that hangs in
one service never delays another service, a replica that passes its probe is
routed at once (not when some tick ends), a hung call becomes a visible,
backed-off failure, and a service with nothing to do writes nothing.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from providers.base import LaunchRequest
from providers.registry import ProviderSet
from skyctl.controller import Controller
from skyctl.lifecycle import EndReason, ReplicaStatus
from skyctl.types import Instance
from tests.fakes.memory_provider import MemoryProvider
from tests.test_controller import FIXED, Harness


@dataclass
class GatedProvider(MemoryProvider):
    """Calls for the services in ``hang_<call>`` wait until ``gates[<call>]`` is set."""

    hang_launch: set[str] = field(default_factory=set)
    hang_terminate: set[str] = field(default_factory=set)
    hang_list: set[str] = field(default_factory=set)
    gates: dict[str, asyncio.Event] = field(
        default_factory=lambda: {k: asyncio.Event() for k in ("launch", "terminate", "list")}
    )
    launch_calls: list[tuple[str, float]] = field(default_factory=list)

    async def launch(self, request: LaunchRequest) -> Instance:
        self.launch_calls.append((request.service, self.clock.now()))
        if request.service in self.hang_launch:
            await self.gates["launch"].wait()
        return await super().launch(request)

    async def terminate(self, instance_id: str) -> None:
        running = self.instances.get(instance_id)
        if running is not None and running.instance.service in self.hang_terminate:
            await self.gates["terminate"].wait()
        await super().terminate(instance_id)

    async def list_instances(self, service: str) -> Sequence[Instance]:
        if service in self.hang_list:
            await self.gates["list"].wait()
        return await super().list_instances(service)


class GatedHarness(Harness):
    provider: GatedProvider
    provider_type = GatedProvider
    deadlines: dict[str, float] = {}

    def _controller(self) -> Controller:
        providers = ProviderSet(config={}, clock=self.clock, local_state=self.tmp / "local")
        providers.add(self.provider)
        return Controller(
            self.store, providers, self.clock, tick_seconds=1.0, deadlines=self.deadlines
        )

    async def seconds_until_ready(self, name: str, replicas: int = 1) -> float:
        start = self.clock.now()
        await self.until(lambda: self.ready(name) >= replicas)
        return self.clock.now() - start


@pytest.fixture
async def g(tmp_path: Path) -> AsyncIterator[GatedHarness]:
    harness = GatedHarness(tmp_path)
    await harness.start()
    yield harness
    assert isinstance(harness.provider, GatedProvider)
    release_all(harness.provider)
    await harness.stop_controller()
    await harness.controller.stop(0)
    await harness.provider.close()
    harness.store.close()


def release_all(p: GatedProvider) -> None:
    for gate in p.gates.values():
        gate.set()


async def test_a_hung_launch_in_one_service_leaves_another_services_time_to_ready_unchanged(
    g: GatedHarness,
) -> None:
    await g.controller.create_service(FIXED.format(name="alone", replicas=1), None)
    baseline = await g.seconds_until_ready("alone")

    g.provider.hang_launch.add("stuck")
    await g.controller.create_service(FIXED.format(name="stuck", replicas=2), None)
    await g.controller.create_service(FIXED.format(name="other", replicas=1), None)
    assert await g.seconds_until_ready("other") <= baseline + 0.25  # one step of real I/O
    assert g.ready("stuck") == 0
    assert {r.status for r in g.replicas("stuck")} == {ReplicaStatus.PROVISIONING}


async def test_a_hung_terminate_in_one_service_leaves_another_services_time_to_ready_unchanged(
    g: GatedHarness,
) -> None:
    await g.controller.create_service(FIXED.format(name="alone", replicas=1), None)
    baseline = await g.seconds_until_ready("alone")
    await g.controller.create_service(FIXED.format(name="stuck", replicas=2), None)
    await g.until(lambda: g.ready("stuck") == 2)

    g.provider.hang_terminate.add("stuck")
    await g.controller.delete_service("stuck")
    await g.controller.create_service(FIXED.format(name="other", replicas=1), None)
    assert await g.seconds_until_ready("other") <= baseline + 0.25
    assert {r.status for r in g.replicas("stuck")} == {ReplicaStatus.SHUTTING_DOWN}
    # the stuck replicas left routing when their termination was decided
    assert g.controller.runtimes["stuck"].backends == []


async def test_a_replica_passing_its_probe_is_routed_while_its_services_tick_is_still_running(
    g: GatedHarness,
) -> None:
    g.provider.hang_launch.add("web")
    await g.controller.create_service(FIXED.format(name="web", replicas=1), None)
    await g.until(lambda: bool(g.provider.launch_calls))  # the launch is under way
    g.provider.hang_list.add("web")  # and the service's next tick hangs in its observation
    g.controller.wake("web")
    await g.until(lambda: "web" in g.controller._ticking)
    g.provider.gates["launch"].set()  # the launch returns: the replica boots, passes its probe
    rt = g.controller.runtimes["web"]
    await g.until(lambda: bool(rt.backends))
    assert "web" in g.controller._ticking  # the tick is still stuck: the probe routed it
    assert g.ready("web") == 0  # the store has not heard yet
    assert await g.get("web") == 200  # and requests reach the replica
    g.provider.gates["list"].set()
    await g.until(lambda: g.ready("web") == 1)


class ShortDeadlines(GatedHarness):
    deadlines = {"launch": 30.0}


@pytest.fixture
async def short(tmp_path: Path) -> AsyncIterator[GatedHarness]:
    harness = ShortDeadlines(tmp_path)
    await harness.start()
    yield harness
    release_all(harness.provider)
    await harness.stop_controller()
    await harness.controller.stop(0)
    await harness.provider.close()
    harness.store.close()


async def test_a_launch_past_its_deadline_is_a_visible_failure_retried_with_backoff(
    short: GatedHarness,
) -> None:
    g = short
    g.provider.hang_launch.add("web")
    await g.controller.create_service(FIXED.format(name="web", replicas=1), None)
    await g.until(lambda: bool(g.store.list_replicas("web")))
    first = g.store.list_replicas("web")[0]

    def failed() -> bool:
        r = g.store.get_replica("web", first.replica_id)
        return r is not None and r.status is ReplicaStatus.TERMINATED

    await g.until(failed, seconds=300)
    ended = g.store.get_replica("web", first.replica_id)
    assert ended is not None and ended.end_reason is EndReason.FAILED_PROVISION
    events = [(e.kind, e.message) for e in g.store.events("web", limit=100) if e.replica_id == 1]
    retries = [m for k, m in events if k == "launch_retry"]
    assert len(retries) == 2 and all("no answer within 30s (deadline)" in m for m in retries)
    assert any(k == "launch_failed" and "deadline" in m for k, m in events)
    # three attempts of that replica, each after the previous deadline plus a growing backoff
    times = [t for s, t in g.provider.launch_calls if s == "web"][:3]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] >= 30 + 2 and gaps[1] >= 30 + 4
    assert gaps[1] > gaps[0]


async def test_a_service_with_nothing_to_do_writes_nothing_and_is_ticked_rarely(
    g: GatedHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await g.controller.create_service(FIXED.format(name="web", replicas=2), None)
    await g.until(lambda: g.ready("web") == 2)
    await g.until(lambda: g.controller.runtimes["web"].quiet, seconds=10)

    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        statements.append(" ".join(sql.split()).upper())

    event.listen(g.store._engine, "before_cursor_execute", count)
    ticks: list[float] = []
    tick = g.controller.reconciler.tick

    async def counting(rt: Any, svc: Any) -> bool:
        ticks.append(g.clock.now())
        return await tick(rt, svc)

    monkeypatch.setattr(g.controller.reconciler, "tick", counting)
    try:
        for _ in range(120):  # 30 fake seconds of probes every second, all passing
            await g.clock.advance(0.25)
            await asyncio.sleep(0.002)
    finally:
        event.remove(g.store._engine, "before_cursor_execute", count)
    assert g.ready("web") == 2
    reads = ("SELECT ", "BEGIN", "COMMIT", "ROLLBACK")
    writes = [s for s in statements if s.startswith("BEGIN IMMEDIATE") or not s.startswith(reads)]
    assert writes == []
    assert 2 <= len(ticks) <= 4  # every 10 s when quiet, not every second
    assert len(statements) / len(ticks) <= 12  # a few reads per tick
