"""The controller loop, specified against an in-process provider and a fake clock.

Replicas are tiny aiohttp servers in the test's loop, so probes and routing are
real HTTP; time only moves when the test advances the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from providers.registry import ProviderSet
from skyctl.clock import FakeClock
from skyctl.controller import Controller
from skyctl.errors import ServiceExists
from skyctl.lifecycle import EndReason, ReplicaStatus
from skyctl.store import Store
from tests.fakes.memory_provider import ZONES, MemoryProvider

FIXED = """\
name: {name}
service:
  readiness_probe:
    path: /
    initial_delay_seconds: 60
    period_seconds: 1
    failure_threshold: 2
  replicas: {replicas}
run: serve
"""

SPOT = """\
name: {name}
service:
  readiness_probe:
    path: /
    initial_delay_seconds: 60
    period_seconds: 1
  replica_policy:
    min_replicas: {replicas}
    max_replicas: {replicas}
    spot_policy: spothedge
resources:
  use_spot: true
run: serve
"""


class Harness:
    #: the in-process cloud; a test harness for another fake sets its own
    provider_type: type[MemoryProvider] = MemoryProvider

    def __init__(self, tmp: Path) -> None:
        self.clock = FakeClock()
        self.tmp = tmp
        self.store = Store(tmp / "state.db")
        self.provider = self.provider_type(clock=self.clock)
        self.controller = self._controller()
        self.task: asyncio.Task[None] | None = None

    def _controller(self) -> Controller:
        providers = ProviderSet(config={}, clock=self.clock, local_state=self.tmp / "local")
        providers.add(self.provider)
        return Controller(self.store, providers, self.clock, tick_seconds=1.0)

    async def start(self) -> None:
        await self.controller.start()
        self.task = asyncio.create_task(self.controller.run())

    async def restart(self) -> None:
        """Stop the controller (replicas keep running) and start a new one on the same store."""
        await self.stop_controller()
        self.controller = self._controller()
        await self.start()

    async def stop_controller(self) -> None:
        self.controller.request_stop()
        if self.task is not None:
            await self.task
        for name in list(self.controller.runtimes):
            await self.controller._drop_runtime(name, grace_seconds=0)

    async def close(self) -> None:
        """Stop the controller, its routers and the provider, and close the store."""
        await self.stop_controller()
        await self.controller.stop(0)
        await self.provider.close()
        self.store.close()

    async def until(
        self,
        predicate: Callable[[], bool],
        *,
        seconds: float = 120,
        check: Callable[[], None] | None = None,
    ) -> None:
        """Advance fake time in small steps until ``predicate`` holds."""
        waited = 0.0
        while not predicate():
            if check is not None:
                check()
            assert waited < seconds, f"condition not reached within {seconds} fake seconds"
            await self.clock.advance(0.25)
            for _ in range(3):  # let real I/O (probes on loopback) complete
                await asyncio.sleep(0.005)
            waited += 0.25

    def replicas(self, name: str, status: ReplicaStatus | None = None) -> list:
        rows = self.store.list_replicas(name)
        return [r for r in rows if status is None or r.status is status]

    def ready(self, name: str) -> int:
        return len(self.replicas(name, ReplicaStatus.READY))

    async def one_ready_replica(self, name: str = "web") -> int:
        """Create service ``name`` of one replica (``FIXED``), wait for it to be READY,
        and return its replica id."""
        await self.controller.create_service(FIXED.format(name=name, replicas=1), None)
        await self.until(lambda: self.ready(name) == 1)
        (rid,) = [r.replica_id for r in self.replicas(name)]
        return int(rid)

    async def get(self, name: str) -> int:
        svc = self.store.get_service(name)
        assert svc is not None
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{svc.router_port}/") as r:
            await r.read()
            return r.status


async def test_a_service_comes_up_and_its_endpoint_routes_to_ready_replicas(h: Harness) -> None:
    await h.controller.create_service(FIXED.format(name="web", replicas=2), None)
    await h.until(lambda: h.ready("web") == 2)
    assert await h.get("web") == 200
    assert {r.spot for r in h.replicas("web")} == {False}
    assert len(h.provider.running("web")) == 2


async def test_a_second_create_of_a_name_is_refused(h: Harness) -> None:
    await h.controller.create_service(FIXED.format(name="web", replicas=1), None)
    with pytest.raises(ServiceExists):
        await h.controller.create_service(FIXED.format(name="web", replicas=1), None)


async def test_a_preempted_replica_leaves_routing_at_once_and_is_replaced(h: Harness) -> None:
    await h.controller.create_service(SPOT.format(name="spot", replicas=2), None)
    await h.until(lambda: h.ready("spot") == 2)
    victim = h.replicas("spot")[0]
    await h.provider.preempt("spot", victim.replica_id)
    # the routing table changed in the same loop iteration: no tick, no probe needed
    rt = h.controller.runtimes["spot"]
    assert victim.replica_id not in {b.replica_id for b in rt.backends}
    assert await h.get("spot") == 200
    await h.until(
        lambda: (
            h.ready("spot") == 2
            and victim.replica_id not in {r.replica_id for r in h.replicas("spot")}
        )
    )
    ended = h.store.get_replica("spot", victim.replica_id)
    assert ended is not None and ended.status is ReplicaStatus.TERMINATED
    assert ended.end_reason is EndReason.PREEMPTED
    assert victim.instance_id in h.provider.terminations  # cleaned up at the provider too


async def test_a_capacity_error_marks_the_location_and_placement_moves_on(h: Harness) -> None:
    h.provider.out_of_capacity.add(ZONES[0])  # the cheapest zone has no spot capacity
    await h.controller.create_service(SPOT.format(name="spot", replicas=2), None)
    await h.until(lambda: h.ready("spot") == 2)
    zones = {r.location for r in h.replicas("spot")}
    assert ZONES[0] not in zones
    failed = [
        r
        for r in h.store.list_replicas("spot", include_terminated=True)
        if r.end_reason is EndReason.FAILED_PROVISION
    ]
    assert failed and all(r.location == ZONES[0] for r in failed)


async def test_a_replica_failing_its_probes_past_the_threshold_is_replaced(h: Harness) -> None:
    await h.controller.create_service(FIXED.format(name="web", replicas=1), None)
    await h.until(lambda: h.ready("web") == 1)
    sick = h.replicas("web")[0]
    h.provider.find("web", sick.replica_id).healthy = False
    await h.until(
        lambda: (
            (r := h.store.get_replica("web", sick.replica_id)) is not None
            and r.status is ReplicaStatus.TERMINATED
        )
    )
    ended = h.store.get_replica("web", sick.replica_id)
    assert ended is not None and ended.end_reason is EndReason.FAILED_PROBING
    await h.until(lambda: h.ready("web") == 1)


async def test_a_rolling_update_keeps_a_ready_replica_throughout(h: Harness) -> None:
    await h.controller.create_service(FIXED.format(name="web", replicas=2), None)
    await h.until(lambda: h.ready("web") == 2)
    await h.controller.update_service(
        "web",
        FIXED.format(name="web", replicas=2).replace("period_seconds: 1", "period_seconds: 2"),
        None,
    )

    def all_new() -> bool:
        live = h.replicas("web")
        return len(live) == 2 and all(
            r.version == 2 and r.status is ReplicaStatus.READY for r in live
        )

    def never_dark() -> None:
        assert h.ready("web") >= 1, "no ready replica during the update"

    await h.until(all_new, check=never_dark)


async def test_down_terminates_everything_and_forgets_the_service(h: Harness) -> None:
    await h.controller.create_service(FIXED.format(name="web", replicas=2), None)
    await h.until(lambda: h.ready("web") == 2)
    port = h.store.get_service("web").router_port  # type: ignore[union-attr]
    await h.controller.delete_service("web")
    await h.until(lambda: h.store.get_service("web") is None)
    assert h.provider.running("web") == []
    assert "web" not in h.controller.runtimes
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/"):
            pass


async def test_a_restarted_controller_adopts_running_replicas_without_launching_more(
    h: Harness,
) -> None:
    await h.controller.create_service(FIXED.format(name="web", replicas=2), None)
    await h.until(lambda: h.ready("web") == 2)
    port = h.store.get_service("web").router_port  # type: ignore[union-attr]
    launches = h.provider.launches
    await h.restart()
    await h.until(lambda: h.ready("web") == 2)
    assert h.provider.launches == launches
    assert h.store.get_service("web").router_port == port  # type: ignore[union-attr]
    assert await h.get("web") == 200


async def test_a_launch_interrupted_by_a_crash_is_resumed_with_the_same_token(h: Harness) -> None:
    await h.controller.create_service(FIXED.format(name="web", replicas=2), None)
    await h.until(lambda: h.ready("web") == 2)
    await h.stop_controller()
    # the controller was replacing a replica that had failed...
    lost = h.replicas("web")[-1]
    for status in (ReplicaStatus.SHUTTING_DOWN, ReplicaStatus.TERMINATED):
        h.store.update_replica(
            "web", lost.replica_id, now=h.clock.now(), status=status, reason=EndReason.FAILED
        )
    assert lost.instance_id is not None
    await h.provider.terminate(lost.instance_id)
    # ...and crashed right after the replacement's intent was recorded, before the call
    from skyctl.types import Location

    rec = h.store.add_replica(
        "web",
        version=1,
        location=Location("local", "r1", "r1-a"),
        spot=False,
        price=3.0,
        instance_type="mem.large",
        client_token="tok-crash",
        now=h.clock.now(),
    )
    h.store.update_replica(
        "web", rec.replica_id, now=h.clock.now(), status=ReplicaStatus.PROVISIONING
    )
    h.controller = h._controller()
    await h.start()
    await h.until(
        lambda: (
            (r := h.store.get_replica("web", rec.replica_id)) is not None
            and r.status is not ReplicaStatus.PROVISIONING
        )
    )
    assert "tok-crash" in h.provider.by_token
    tokens = [r.client_token for r in h.store.list_replicas("web", include_terminated=True)]
    assert len(tokens) == len(set(tokens))


async def test_a_transient_launch_error_is_retried(h: Harness) -> None:
    h.provider.transient_launch_errors = 1
    await h.controller.create_service(FIXED.format(name="web", replicas=1), None)
    await h.until(lambda: h.ready("web") == 1)
    assert h.provider.launches == 1


async def test_garbage_collection_terminates_instances_of_unknown_services(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    try:
        from providers.base import LaunchRequest
        from skyctl.spec_yaml import parse_spec
        from skyctl.types import Offering

        spec = parse_spec(FIXED.format(name="ghost", replicas=1))
        await harness.provider.launch(
            LaunchRequest(
                service="ghost",
                replica_id=1,
                version=1,
                client_token="t",
                offering=Offering(ZONES[0], False, 3.0),
                spec=spec,
            )
        )
        assert harness.provider.running("ghost")
        await harness.controller.start()
        assert harness.provider.running("ghost") == []
    finally:
        await harness.controller.stop(0)
        await harness.provider.close()
        harness.store.close()


async def test_an_exception_in_one_service_never_stops_the_loop(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = h.provider.list_instances

    async def broken(service: str):  # type: ignore[no-untyped-def]
        if service == "bad":
            raise RuntimeError("boom")
        return await original(service)

    monkeypatch.setattr(h.provider, "list_instances", broken)
    await h.controller.create_service(FIXED.format(name="bad", replicas=1), None)
    await h.controller.create_service(FIXED.format(name="good", replicas=1), None)
    await h.until(lambda: h.ready("good") == 1)
    kinds = [e.kind for e in h.store.events("bad")]
    assert "error" in kinds
    with contextlib.suppress(Exception):
        await h.controller.delete_service("bad")


AUTOSCALED = """\
name: auto
service:
  readiness_probe:
    path: /
    initial_delay_seconds: 60
    period_seconds: 1
  replica_policy:
    min_replicas: 1
    max_replicas: 3
    target_qps_per_replica: 1
    upscale_delay_seconds: 5
    downscale_delay_seconds: 20
run: serve
"""


async def test_the_autoscaler_follows_the_request_rate_the_router_counts(h: Harness) -> None:
    await h.controller.create_service(AUTOSCALED, None)
    await h.until(lambda: h.ready("auto") == 1)
    port = h.store.get_service("auto").router_port  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as s:  # 150 requests in one fake instant: 2.5 QPS over 60 s
        for _ in range(150):
            async with s.get(f"http://127.0.0.1:{port}/") as r:
                assert r.status == 200
    await h.until(lambda: h.ready("auto") == 3)
    # no more traffic: once the window has passed and the downscale delay too, back to one
    await h.until(lambda: len(h.replicas("auto")) == 1 and h.ready("auto") == 1, seconds=200)
    ended = [
        r
        for r in h.store.list_replicas("auto", include_terminated=True)
        if r.status is ReplicaStatus.TERMINATED
    ]
    assert {r.end_reason for r in ended} == {EndReason.SCALED_DOWN}


async def test_a_location_whose_api_keeps_failing_is_skipped_by_its_breaker(h: Harness) -> None:
    h.provider.sick.add(ZONES[0])  # the cheapest zone answers every launch with a 503
    await h.controller.create_service(SPOT.format(name="spot", replicas=2), None)
    await h.until(lambda: h.ready("spot") == 2)
    assert ZONES[0] not in {r.location for r in h.replicas("spot")}
    assert "breaker_open" in [e.kind for e in h.store.events("spot", limit=500)]
    assert h.controller.reconciler.breakers.open_locations() == [ZONES[0]]


async def test_the_daemon_freezes_its_start_up_heap_once_it_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What start-up loaded stays out of later collections (docs/router-benchmarks.md): the
    daemon collects once and freezes, after it is listening, before it runs."""
    from types import SimpleNamespace

    from skyctl.config import paths
    from skyctl.controller import daemon
    from tests.helpers.waiting import eventually

    calls: list[str] = []
    fake_gc = SimpleNamespace(
        collect=lambda: calls.append("collect"), freeze=lambda: calls.append("freeze")
    )
    monkeypatch.setattr(daemon, "gc", fake_gc)
    home = paths(tmp_path / "home")
    task = asyncio.ensure_future(daemon.serve(home, port=0))
    try:
        await eventually(lambda: calls == ["collect", "freeze"], "the heap frozen")
        assert home.daemon_info.exists()  # listening first
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert not home.daemon_info.exists()  # and it cleaned up as it stopped
