"""Scenarios of the Kubernetes provider over two fake API servers: spot capacity lost
in one cluster, then the other, and the controller keeping a service up across both.
The fixtures are those of ``tests/test_kubernetes_provider.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from providers.kubernetes import KubernetesProvider
from skyctl.clock import FakeClock
from skyctl.errors import CapacityError
from skyctl.types import InstanceEvent, InstanceEventKind, InstanceState
from tests.fakes.k8s_harness import (
    advance_until,
    make_request,
    make_spec,
    start_clusters,
    wait_for,
    write_kubeconfig,
)
from tests.fakes.k8s_server import FakeKubernetes
from tests.helpers.waiting import step_until
from tests.test_kubernetes_provider import (
    A,
    B,
    _config,
    clock,
    clusters,
    events,
    kubeconfig,
    provider,
)

__all__ = ["clock", "clusters", "events", "kubeconfig", "provider"]  # fixtures, used by name

# ------------------------------------------------------------------- scenario


async def test_two_clusters_spot_moves_to_the_other_cluster_then_to_ondemand_and_down_cleans_both(
    provider: KubernetesProvider,
    clusters: dict[str, FakeKubernetes],
    events: list[InstanceEvent],
    clock: FakeClock,
) -> None:
    spec = make_spec()
    offers = {(o.location, o.spot): o for o in await provider.offerings(spec)}
    one = await provider.launch(make_request(spec, offers[(A, True)], 1))
    two = await provider.launch(make_request(spec, offers[(B, True)], 2))
    assert {one.location, two.location} == {A, B}
    assert one.state is two.state is InstanceState.RUNNING

    # cluster A's spot pool is reclaimed: its replica is preempted at once ...
    await wait_for(lambda: clusters["ctx-a"].watch_count > 0, "the watch of ctx-a")
    clusters["ctx-a"].remove_node("ctx-a-spot-1")
    await wait_for(lambda: [e.replica_id for e in events] == [1], "replica 1 preempted")
    # ... and a replacement there never schedules: given up, then the pool says no
    three = await provider.launch(make_request(spec, offers[(A, True)], 3))
    assert three.state is InstanceState.PENDING
    await advance_until(clock, lambda: [e.replica_id for e in events] == [1, 3], "3 given up")
    with pytest.raises(CapacityError):
        await provider.launch(make_request(spec, offers[(A, True)], 4))
    five = await provider.launch(make_request(spec, offers[(B, True)], 5))
    assert five.state is InstanceState.RUNNING and five.location == B

    # cluster B's spot pool goes too: on-demand in A carries the service
    await wait_for(lambda: clusters["ctx-b"].watch_count > 0, "the watch of ctx-b")
    clusters["ctx-b"].remove_node("ctx-b-spot-1")
    await wait_for(lambda: sorted(e.replica_id for e in events) == [1, 2, 3, 5], "B preempted")
    six = await provider.launch(make_request(spec, offers[(A, False)], 6))
    assert six.state is InstanceState.RUNNING and not six.spot
    assert all(e.kind is InstanceEventKind.PREEMPTED for e in events)

    states = {i.replica_id: i.state for i in await provider.list_instances("svc")}
    assert states == {
        1: InstanceState.PREEMPTED,
        2: InstanceState.PREEMPTED,
        3: InstanceState.PREEMPTED,
        5: InstanceState.PREEMPTED,
        6: InstanceState.RUNNING,
    }

    # serve down: terminate everything listed; neither cluster keeps a pod of ours
    for inst in await provider.list_instances("svc"):
        await provider.terminate(inst.instance_id)
    assert await provider.list_instances("svc") == []
    for fake in clusters.values():
        assert fake.pods(selector="skyctl-service") == []


# ------------------------------------------------- the controller, in process

CONTROLLER_SPEC = """\
name: web
resources:
  use_spot: true
  any_of:
    - infra: k8s/ctx-a
    - infra: k8s/ctx-b
service:
  ports: {port}
  readiness_probe: {{path: /, initial_delay_seconds: 60, period_seconds: 1}}
  replica_policy:
    min_replicas: 2
    max_replicas: 2
    spot_policy: spothedge
    dynamic_ondemand_fallback: true
run: serve
"""


async def test_a_controller_keeps_a_service_up_across_two_clusters_and_down_cleans_them(
    tmp_path: Path, clock: FakeClock
) -> None:
    import asyncio
    import socket

    import aiohttp

    from providers.registry import ProviderSet
    from skyctl.controller import Controller
    from skyctl.lifecycle import ReplicaStatus as S
    from skyctl.store import Store

    fakes = await start_clusters(clock)
    for fake in fakes.values():
        fake.serve_pods = True  # pods answer HTTP on their loopback pod IPs
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kc = write_kubeconfig(tmp_path / "kc", fakes)
    provider = KubernetesProvider(
        _config(kc, unschedulable_timeout_seconds=10, capacity_cooldown_seconds=30), clock=clock
    )
    store = Store(tmp_path / "state.db")
    providers = ProviderSet(config={}, clock=clock, local_state=tmp_path / "local")
    providers.add(provider)
    controller = Controller(store, providers, clock, tick_seconds=1.0, gc_clouds=("kubernetes",))
    await controller.start()
    task = asyncio.create_task(controller.run())

    def live(spot: bool | None = None, status: S | None = None) -> list[Any]:
        return [
            r
            for r in store.list_replicas("web")
            if r.is_live
            and (spot is None or r.spot is spot)
            and (status is None or r.status is status)
        ]

    async def until(cond: Any, seconds: float = 300) -> None:
        await step_until(clock, cond, seconds)

    async def get() -> int:
        svc = store.get_service("web")
        assert svc is not None and svc.router_port
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{svc.router_port}/") as r,
        ):
            return r.status

    try:
        await controller.create_service(CONTROLLER_SPEC.format(port=port), None)
        await until(lambda: len(live(True, S.READY)) == 2 and not live(False))
        assert {r.location for r in live(True)} == {A, B}  # spread over both clusters
        assert await get() == 200

        fakes["ctx-a"].remove_node("ctx-a-spot-1")  # cluster A's spot pool is reclaimed
        await until(lambda: any(e.kind == "preempted" for e in store.events("web")))
        await until(
            lambda: (
                len(live(status=S.READY)) >= 2
                and not any(r.location == A and r.spot for r in live(status=S.READY))
            )
        )
        assert await get() == 200

        # a replacement in A never schedules: given up, then A's spot pool refuses launches
        await until(
            lambda: any(
                e.kind == "launch_failed" and "CapacityError" in e.message
                for e in store.events("web", limit=1000)
            )
        )
        assert len(live(status=S.READY)) >= 2 and await get() == 200  # on-demand covers

        await controller.delete_service("web")
        await until(lambda: not any(f.pods(selector="skyctl-service") for f in fakes.values()))
        assert await provider.list_services() == []
    finally:
        controller.request_stop()
        await task
        await controller.stop(0)
        await providers.close()
        store.close()
        for fake in fakes.values():
            await fake.stop()
