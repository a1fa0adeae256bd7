"""Drain that respects long generations: a stream outlives a rolling update.

A replica leaving (scale-down, rolling or blue-green update) keeps serving its
in-flight requests up to ``service.load_balancer.drain_timeout_seconds``
(default 600 s) before its instance is terminated; beyond it, what is left is
cut. Against the controller on the fake clock (replicas are in-process HTTP
servers whose ``/stream`` writes a line per clock second).
"""

from __future__ import annotations

import asyncio

import aiohttp

from skyctl.lifecycle import ReplicaStatus
from skyctl.spec import ServiceSection
from tests.test_controller import FIXED, Harness


async def stream(h: Harness, lines: int) -> tuple[list[str], str]:
    """Read ``/stream?n=lines`` through the router: the lines, and how it ended."""
    svc = h.store.get_service("web")
    assert svc is not None
    got: list[str] = []
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(f"http://127.0.0.1:{svc.router_port}/stream?n={lines}") as resp,
        ):
            async for line in resp.content:
                got.append(line.decode().strip())
    except aiohttp.ClientPayloadError:
        return got, "cut"
    return got, "complete"


def updated(h: Harness) -> bool:
    live = h.replicas("web")
    return len(live) == 2 and all(r.version == 2 and r.status is ReplicaStatus.READY for r in live)


async def rolling_update(
    h: Harness, spec: str, lines: int, mode: str = "rolling"
) -> tuple[list[str], str, float]:
    await h.controller.create_service(spec, None)
    await h.until(lambda: h.ready("web") == 2)
    reader = asyncio.create_task(stream(h, lines))
    router = h.controller.runtimes["web"].router
    await h.until(lambda: any(s["in_flight"] for s in router.replica_stats().values()), seconds=5)
    started = h.clock.now()
    # a change to what replicas run (a service:-only change would keep them, in place)
    new = spec.replace("run: serve", "envs: {RELEASE: '2'}\nrun: serve")
    await h.controller.update_service("web", new, None, mode=mode)
    assert h.store.get_service("web").current_version == 2  # type: ignore[union-attr]
    await h.until(lambda: reader.done() and updated(h), seconds=900)
    got, end = reader.result()
    return got, end, h.clock.now() - started


async def test_a_90_second_stream_completes_across_a_rolling_update(h: Harness) -> None:
    assert ServiceSection().drain_timeout_seconds == 600.0
    got, end, _ = await rolling_update(h, FIXED.format(name="web", replicas=2), 90)
    assert end == "complete" and got == [str(i) for i in range(90)]


async def test_a_90_second_stream_completes_across_a_blue_green_update(h: Harness) -> None:
    """The old replicas leave routing together at the switch, then drain as in a rolling one."""
    got, end, _ = await rolling_update(h, FIXED.format(name="web", replicas=2), 90, "blue_green")
    assert end == "complete" and got == [str(i) for i in range(90)]
    assert h.store.get_version("web", 2).update_mode == "blue_green"


async def test_a_stream_longer_than_the_drain_timeout_is_cut_when_it_ends(h: Harness) -> None:
    spec = FIXED.format(name="web", replicas=2).replace(
        "  replicas: 2", "  replicas: 2\n  load_balancer: {drain_timeout_seconds: 20}"
    )
    got, end, _ = await rolling_update(h, spec, 300)
    assert end == "cut" and 15 <= len(got) < 300
