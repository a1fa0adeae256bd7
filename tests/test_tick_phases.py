"""Quiet services tick on their own phases of the quiet period, not in one burst.

Specification (fake clock, in-process provider): services created together,
once they have nothing to do, are each ticked about once per quiet period, and
their ticks are spread over the period (each service keeps its own phase), so
the controller never runs every service's tick in the same instant. A service
that is woken still ticks at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.test_controller import FIXED, Harness

SERVICES = 10


async def quiet_ticks(
    h: Harness, monkeypatch: pytest.MonkeyPatch, seconds: float
) -> list[tuple[float, str]]:
    """Every service created at the same instant, all READY and quiet: the ticks of
    the next ``seconds`` fake seconds, (time, service)."""
    for i in range(SERVICES):
        await h.controller.create_service(FIXED.format(name=f"s{i}", replicas=1), None)
    names = [f"s{i}" for i in range(SERVICES)]
    await h.until(lambda: all(h.ready(n) == 1 for n in names), seconds=60)
    await h.until(lambda: all(h.controller.runtimes[n].quiet for n in names), seconds=30)
    for _ in range(60):  # a quiet period and a half: every service on its phase
        await h.clock.advance(0.25)
        await asyncio.sleep(0.002)
    ticks: list[tuple[float, str]] = []
    tick = h.controller.reconciler.tick

    async def counting(rt: Any, svc: Any) -> bool:
        ticks.append((h.clock.now(), svc.name))
        return await tick(rt, svc)

    monkeypatch.setattr(h.controller.reconciler, "tick", counting)
    for _ in range(int(seconds / 0.25)):
        await h.clock.advance(0.25)
        await asyncio.sleep(0.002)
    return ticks


def ticks_of(h: Harness, monkeypatch: pytest.MonkeyPatch, name: str) -> list[float]:
    """From now on, the times of ``name``'s ticks (the list fills as they happen)."""
    ticks: list[float] = []
    tick = h.controller.reconciler.tick

    async def counting(rt: Any, svc: Any) -> bool:
        if svc.name == name:
            ticks.append(h.clock.now())
        return await tick(rt, svc)

    monkeypatch.setattr(h.controller.reconciler, "tick", counting)
    return ticks


async def test_quiet_services_created_together_tick_spread_over_the_period(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    period = h.controller.quiet_tick_seconds  # 10 s
    ticks = await quiet_ticks(h, monkeypatch, seconds=2 * period)
    per_service: dict[str, list[float]] = {}
    for at, name in ticks:
        per_service.setdefault(name, []).append(at)
    # each about once a period: two ticks in two periods, a period apart
    assert sorted(per_service) == sorted(f"s{i}" for i in range(SERVICES))
    for times in per_service.values():
        assert len(times) == 2 and times[1] - times[0] == pytest.approx(period, abs=0.5)
    # spread: no tenth of the period holds more than two services' ticks
    # (all ten in one instant, as before phases, would put ten in one)
    slots: dict[int, set[str]] = {}
    for at, name in ticks:
        slots.setdefault(int((at % period) / (period / 10)), set()).add(name)
    assert max(len(s) for s in slots.values()) <= 2
    assert len(slots) >= 7


async def test_a_woken_quiet_service_ticks_at_once(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await quiet_ticks(h, monkeypatch, seconds=0)
    ticks = ticks_of(h, monkeypatch, "s3")
    woken_at = h.clock.now()
    h.controller.wake("s3")
    for _ in range(3):
        await asyncio.sleep(0.005)
    assert ticks and ticks[0] == woken_at


async def test_an_explicit_retry_ticks_that_service_alone_at_once(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(It used to wake every service: 1,000 quiet services would tick in one burst.)"""
    ticks = await quiet_ticks(h, monkeypatch, seconds=0)
    at = h.clock.now()
    await h.controller.retry_service("s3")
    for _ in range(3):
        await asyncio.sleep(0.005)
    now = [name for when, name in ticks if when == at]
    assert "s3" in now and len(now) <= 2  # (another may be on its phase just then)


async def test_a_quiet_service_taken_down_ticks_each_period_while_it_drains(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service that was quiet and is taken down while its replicas still have
    requests in flight ticks every ``tick_seconds`` until they drain, so it goes as
    soon as they have: not on its next quiet tick, up to 1.5 quiet periods later
    (``serve down`` of an idle service took about 10 s behind the router process,
    whose in-flight counts are known only after the tick that removed the replicas)."""
    await quiet_ticks(h, monkeypatch, seconds=0)
    rt = h.controller.runtimes["s3"]
    busy = {"in_flight": 1}
    monkeypatch.setattr(rt.router, "replica_stats", lambda: {r: dict(busy) for r in (1, 2, 3)})
    ticks = ticks_of(h, monkeypatch, "s3")
    await h.controller.delete_service("s3")
    for _ in range(12):  # three seconds
        await h.clock.advance(0.25)
        await asyncio.sleep(0.002)
    assert len(ticks) >= 3, ticks  # draining: a tick a second
    assert h.controller.store.get_service("s3") is not None  # still draining
    busy["in_flight"] = 0
    drained_at = h.clock.now()
    await h.until(lambda: h.controller.store.get_service("s3") is None, seconds=30)
    assert h.clock.now() - drained_at <= 2 * h.controller.tick_seconds + 0.5
