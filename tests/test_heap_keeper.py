"""The controller's garbage-collector policy (skyctl.controller.heap.HeapKeeper).

Specification: a full collection that cost much CPU freezes its survivors, so
later full collections walk only what was made since, and they are ten times
rarer than CPython's default while it is installed; a cheap one (a small heap)
freezes nothing; young collections are never looked at; every reclaim period
the whole heap (frozen objects included) is collected once and its survivors
frozen again, so cyclic garbage among frozen objects lives an hour at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Callable
from typing import Any

from skyctl.clock import FakeClock
from skyctl.controller.heap import HeapKeeper


class FakeCollector:
    def __init__(self) -> None:
        self.callbacks: list[Callable[[str, dict[str, Any]], None]] = []
        self.frozen = 0
        self.young = 0  # objects a freeze would move
        self.log: list[str] = []

    def freeze(self) -> None:
        self.frozen += self.young
        self.young = 0
        self.log.append("freeze")

    def unfreeze(self) -> None:
        self.young += self.frozen
        self.frozen = 0
        self.log.append("unfreeze")

    def get_freeze_count(self) -> int:
        return self.frozen

    garbage = 0  # cyclic garbage a full collection would free

    def collect(self) -> int:
        """gc.collect(): a full collection of everything not frozen."""
        self.log.append("collect")
        freed, self.garbage = self.garbage, 0
        return freed

    thresholds = (700, 10, 10)

    def get_threshold(self) -> tuple[int, int, int]:
        return self.thresholds

    def set_threshold(self, *values: int) -> None:
        self.thresholds = (values[0], values[1], values[2])

    def run_collection(self, generation: int, cpu_seconds: float, clock: dict[str, float],
                collected: int = 0) -> None:  # fmt: skip
        """One collection of ``generation`` costing ``cpu_seconds`` (as the interpreter runs it)."""
        for cb in list(self.callbacks):
            cb("start", {"generation": generation, "collected": 0, "uncollectable": 0})
        clock["cpu"] += cpu_seconds
        for cb in list(self.callbacks):
            cb("stop", {"generation": generation, "collected": collected, "uncollectable": 0})


def keeper(collector: FakeCollector, clock: dict[str, float], **kwargs: Any) -> HeapKeeper:
    return HeapKeeper(
        collector=collector,
        cpu=lambda: clock["cpu"],
        **kwargs,
    ).install()


def test_a_costly_full_collection_freezes_its_survivors() -> None:
    gcm, clock = FakeCollector(), {"cpu": 0.0, "mono": 0.0}
    k = keeper(gcm, clock, freeze_after=0.02)
    gcm.young = 500_000
    gcm.run_collection(2, cpu_seconds=0.3, clock=clock)
    assert gcm.log == ["freeze"]
    assert gcm.frozen == 500_000 and k.freezes == 1


def test_a_cheap_full_collection_freezes_nothing() -> None:
    gcm, clock = FakeCollector(), {"cpu": 0.0, "mono": 0.0}
    keeper(gcm, clock, freeze_after=0.02)
    gcm.young = 1_000
    gcm.run_collection(2, cpu_seconds=0.001, clock=clock)
    assert gcm.log == [] and gcm.frozen == 0


def test_young_collections_are_never_looked_at() -> None:
    gcm, clock = FakeCollector(), {"cpu": 0.0, "mono": 0.0}
    keeper(gcm, clock, freeze_after=0.02)
    gcm.run_collection(0, cpu_seconds=0.5, clock=clock)
    gcm.run_collection(1, cpu_seconds=0.5, clock=clock)
    assert gcm.log == []


async def test_every_reclaim_period_the_whole_heap_is_collected_once_and_frozen_again() -> None:
    gcm, clock = FakeCollector(), {"cpu": 0.0, "mono": 0.0}
    k = keeper(gcm, clock, freeze_after=0.02, reclaim_seconds=3600)
    gcm.young = 100_000
    gcm.run_collection(2, cpu_seconds=0.3, clock=clock)  # frozen
    gcm.garbage = 7_000  # frozen objects that became cyclic garbage since
    fake = FakeClock()
    task = asyncio.ensure_future(k.reclaim_every(fake))
    await asyncio.sleep(0)  # (it sleeps on the fake clock)
    try:
        await fake.advance(3599)
        assert gcm.log == ["freeze"]  # not yet
        await fake.advance(1)
        await asyncio.sleep(0)
        # everything unfrozen, collected once, the survivors frozen again
        assert gcm.log == ["freeze", "unfreeze", "collect", "freeze"]
        assert gcm.frozen == 100_000 and k.reclaims == 1 and k.reclaimed == 7_000
        await fake.advance(3600)
        await asyncio.sleep(0)
        assert gcm.log.count("collect") == 2  # and again an hour on
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_full_collections_are_ten_times_rarer_while_installed() -> None:
    gcm, clock = FakeCollector(), {"cpu": 0.0, "mono": 0.0}
    gcm.thresholds = (2000, 15, 10)
    k = keeper(gcm, clock)
    assert gcm.thresholds == (2000, 15, 100)  # the young generations as they were
    k.uninstall()
    assert gcm.thresholds == (2000, 15, 10)


def test_uninstalled_it_does_nothing() -> None:
    gcm, clock = FakeCollector(), {"cpu": 0.0, "mono": 0.0}
    k = keeper(gcm, clock, freeze_after=0.02)
    k.uninstall()
    gcm.run_collection(2, cpu_seconds=1.0, clock=clock)
    assert gcm.log == [] and gcm.callbacks == []


def test_with_the_real_collector_survivors_leave_later_full_collections() -> None:
    """A heap of long-lived containers is frozen after the first costly full collection:
    the next full collection no longer walks it, and nothing frozen is lost."""
    gc.collect()
    before, thresholds = gc.get_freeze_count(), gc.get_threshold()
    k = HeapKeeper(freeze_after=0.0).install()  # every full collection counts as costly
    try:
        kept = [{"i": i} for i in range(50_000)]  # long-lived, tracked containers
        gc.collect()
        assert k.freezes >= 1
        assert gc.get_freeze_count() >= before + len(kept)
        assert not any(d is kept[0] for d in gc.get_objects(generation=2))
        assert kept[49_999]["i"] == 49_999
        assert gc.get_threshold()[2] == 100
    finally:
        k.uninstall()
        assert gc.get_threshold() == thresholds
        gc.unfreeze()
        if before:  # the test process froze its own start-up before: as it was
            gc.freeze()
