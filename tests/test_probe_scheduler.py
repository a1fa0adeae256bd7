"""One probe scheduler per controller: probes spread over the period, one shared pool.

The clock is a FakeClock; only the HTTP exchanges with the local server are real
(waited for with ``eventually``, never slept).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

from aiohttp import web

from skyctl.clock import FakeClock
from skyctl.controller.prober import Prober, ProbeScheduler, Target, shared_scheduler
from skyctl.spec import ReadinessProbe
from tests.helpers.probed import ProbedServer
from tests.helpers.waiting import eventually


async def step(clock: FakeClock, scheduler: ProbeScheduler, seconds: float) -> None:
    """Advance the clock, then let every probe it started finish (real I/O)."""
    await clock.advance(seconds)
    await eventually(lambda: scheduler.in_flight == 0, "the started probes to finish")


async def test_a_burst_of_new_replicas_is_probed_at_once_then_spread_over_the_period(
    stub: ProbedServer,
) -> None:
    clock = FakeClock()
    scheduler = ProbeScheduler(clock)
    probed: dict[int, list[float]] = {i: [] for i in range(40)}
    prober = Prober(
        ReadinessProbe(path="/health", period_seconds=10),
        clock=clock,
        on_change=lambda: None,
        on_result=lambda rid, _ok: probed[rid].append(clock.now()),
        scheduler=scheduler,
    )
    prober.start()
    try:
        start = clock.now()
        prober.set_targets([Target(i, f"{stub.url}/i/{i}") for i in range(40)])
        await step(clock, scheduler, 0)
        assert all(times == [start] for times in probed.values())  # at once, no clock step
        for _ in range(120):  # three periods, in quarter seconds
            await step(clock, scheduler, 0.25)
    finally:
        await prober.close()
    for times in probed.values():
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert 0.25 <= gaps[0] <= 10.25  # onto its own phase within one period
        assert all(abs(gap - 10) < 1e-6 for gap in gaps[1:])  # then once a period exactly
    # the second round is spread: about 4 a second, never the whole burst at once
    per_second = Counter(int(times[1] - start) % 10 for times in probed.values())
    assert len(per_second) == 10 and max(per_second.values()) <= 8


async def test_every_service_shares_one_scheduler_and_one_connection_pool(
    stub: ProbedServer,
) -> None:
    clock = FakeClock()
    probe = ReadinessProbe(path="/health", period_seconds=1)
    a = Prober(probe, clock=clock, on_change=lambda: None)
    b = Prober(probe, clock=clock, on_change=lambda: None)
    assert a.scheduler is b.scheduler is shared_scheduler(clock)
    a.start()
    b.start()
    try:
        a.set_targets([Target(1, f"{stub.url}/i/a1")])
        await step(clock, a.scheduler, 0)
        for _ in range(12):
            b.set_targets([Target(1, f"{stub.url}/i/b1")])
            await step(clock, a.scheduler, 0.25)
    finally:
        await a.close()
        await b.close()
    paths = Counter(path for _, path, _, _ in stub.seen)
    assert paths["/i/a1/health"] >= 3 and paths["/i/b1/health"] >= 3
    # one after the other on one kept-alive connection: both services' replicas
    assert len(set(stub.peers)) == 1
    assert a.scheduler.pool is not None  # (recreated on use: the last close closed it)


async def test_the_last_prober_to_close_stops_the_scheduler_and_its_connections(
    stub: ProbedServer,
) -> None:
    clock = FakeClock()
    prober = Prober(ReadinessProbe(period_seconds=1), clock=clock, on_change=lambda: None)
    prober.start()
    prober.set_targets([Target(1, stub.url)])
    await step(clock, prober.scheduler, 0)
    assert prober.results[1].ok is True
    assert prober.scheduler._pool is not None and prober.scheduler._task is not None
    await prober.close()
    assert prober.scheduler._pool is None and prober.scheduler._task is None
    assert prober.results[1].ok is True  # the last results stay readable


async def test_a_forgotten_replica_in_flight_is_not_recorded_and_frees_its_slot() -> None:
    hang = asyncio.Event()

    async def handle(_request: web.Request) -> web.Response:
        await hang.wait()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    clock = FakeClock()
    heard: list[int] = []
    prober = Prober(
        ReadinessProbe(period_seconds=1, timeout_seconds=30),
        clock=clock,
        on_change=lambda: None,
        on_result=lambda rid, _ok: heard.append(rid),
    )
    prober.start()
    try:
        prober.set_targets([Target(5, url)])
        await eventually(lambda: prober.scheduler.in_flight == 1, "the probe under way")
        prober.forget(5)
        assert prober.scheduler.in_flight == 0 and 5 not in prober.results
        hang.set()
        await clock.advance(2)
        assert heard == []
    finally:
        await prober.close()
        await runner.cleanup()


async def test_a_header_that_cannot_be_sent_fails_the_probe_with_its_name() -> None:
    clock = FakeClock()
    probe = ReadinessProbe(headers={"X-Bad": "a\r\nInjected: 1"})
    prober = Prober(probe, clock=clock, on_change=lambda: None)
    prober.start()
    try:
        prober.set_targets([Target(1, "http://127.0.0.1:9")])
        await step(clock, prober.scheduler, 0)
        assert prober.results[1].ok is False
        assert "readiness_probe.headers.X-Bad" in prober.results[1].detail
    finally:
        await prober.close()


async def test_probes_beyond_the_in_flight_bound_wait_their_turn_then_go() -> None:
    release = asyncio.Event()
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.path)
        await release.wait()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    clock = FakeClock()
    scheduler = ProbeScheduler(clock, max_in_flight=2)
    prober = Prober(
        ReadinessProbe(period_seconds=10, timeout_seconds=30),
        clock=clock,
        on_change=lambda: None,
        scheduler=scheduler,
    )
    prober.start()
    try:
        prober.set_targets([Target(i, f"{url}/i/{i}") for i in range(5)])
        await eventually(lambda: len(seen) == 2, "two probes under way")
        assert scheduler.in_flight == 2
        release.set()
        await eventually(lambda: all(r.ok for r in prober.results.values()), "all five probed")
        assert sorted(seen) == [f"/i/{i}/" for i in range(5)]
    finally:
        await prober.close()
        await runner.cleanup()
