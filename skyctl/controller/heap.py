"""The controller's garbage-collector policy: long-lived state out of full collections.

CPython's cyclic collector stops the event loop while it runs, and a full
(generation 2) collection walks every tracked object. A controller with 1,000
services and 10,000 replicas holds about 150 MB of long-lived objects
(runtimes, routers, replica records, probe entries): one full collection of
them took 1.7 s of wall clock on a shared 2-core machine, during which no
probe, tick or request moved (``benchmarks/control_plane.py``).

:class:`HeapKeeper` keeps that state out of later collections with
``gc.freeze()`` (the objects move to the collector's permanent generation),
as the CPython docs suggest for state that lives as long as the process:

- after a full collection that cost at least :data:`FREEZE_AFTER_CPU_SECONDS`
  of CPU, the objects that survived it are frozen, from inside the collector's
  own "stop" callback (so exactly the survivors: everything else was just
  collected). The next full collections walk only what was made since. A
  small heap (a test, a few services) is never frozen: its collections are
  cheap already.
- the cost: a frozen object is still freed when its reference count drops to
  zero (most objects), but a frozen object that becomes garbage inside a
  reference cycle stays until the next reclaim. :meth:`HeapKeeper.reclaim_every`
  (a task the daemon runs) unfreezes everything every :data:`RECLAIM_SECONDS`,
  collects the whole heap once and freezes what survived: cyclic garbage is
  freed within the hour whatever the collector's thresholds, and the long pause
  of walking the whole heap happens once an hour instead of every few tens of
  seconds.
- full collections are made rarer: the third threshold (full collections at
  most once per that many generation-1 collections; CPython's default 10) is
  :data:`FULL_EVERY` while the keeper is installed. With the long-lived state
  frozen, what a full collection still walks is mostly objects every tick
  renews (each replica's record, view and backend, replaced every quiet
  period): live, and freed by reference counting when replaced, not by the
  collector. At 1,000 services x 10,000 replicas one such collection cost
  140-160 ms of CPU, about once in every 30 s. The cost of making them ten
  times rarer: cyclic garbage made outside the frozen heap waits up to ten
  times longer to be freed (measured: 0 to 806 such objects after a 10-minute
  run, RSS unchanged).

The daemon installs it once the stored services are restored (after its own
``gc.collect(); gc.freeze()`` of what start-up loaded); the benchmark does the
same. It is process-wide, so only the process's owner installs it (never a
``Controller`` object, which tests make many of).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from skyctl.clock import Clock

log = logging.getLogger(__name__)

#: a full collection that cost at least this much CPU (seconds) freezes its survivors
FREEZE_AFTER_CPU_SECONDS = 0.02
#: frozen objects are given back to the collector this often (seconds)
RECLAIM_SECONDS = 3600.0
#: a full collection at most once per this many generation-1 collections (default 10)
FULL_EVERY = 100


class Collector(Protocol):
    """The part of the ``gc`` module the keeper uses (tests pass a fake)."""

    callbacks: list[Callable[[str, dict[str, Any]], None]]

    def freeze(self) -> None: ...

    def unfreeze(self) -> None: ...

    def get_freeze_count(self) -> int: ...

    def collect(self) -> int: ...

    def get_threshold(self) -> tuple[int, int, int]: ...

    def set_threshold(
        self, threshold0: int, threshold1: int = ..., threshold2: int = ..., /
    ) -> None: ...


class HeapKeeper:
    """Freezes the survivors of costly full collections, makes full collections
    rarer, and (:meth:`reclaim_every`) collects the whole heap once an hour."""

    def __init__(
        self,
        *,
        collector: Collector | None = None,
        cpu: Callable[[], float] = time.thread_time,
        freeze_after: float = FREEZE_AFTER_CPU_SECONDS,
        reclaim_seconds: float = RECLAIM_SECONDS,
        full_every: int = FULL_EVERY,
    ) -> None:
        self._gc: Collector = collector if collector is not None else gc  # type: ignore[assignment]
        self._cpu = cpu
        self.freeze_after = freeze_after
        self.reclaim_seconds = reclaim_seconds
        self.full_every = full_every
        self._thresholds: tuple[int, int, int] | None = None  # as they were before install
        self.full_collections = 0
        self._started_cpu = 0.0
        self.freezes = 0  # (tests and /metrics-style reports read these)
        self.reclaims = 0
        self.reclaimed = 0  # objects the reclaiming collections freed
        self._installed = False

    def install(self) -> HeapKeeper:
        if not self._installed:
            self._gc.callbacks.append(self._on_gc)
            self._thresholds = self._gc.get_threshold()
            young, middle, _full = self._thresholds
            self._gc.set_threshold(young, middle, self.full_every)
            self._installed = True
        return self

    def uninstall(self) -> None:
        if self._installed:
            self._gc.callbacks.remove(self._on_gc)
            if self._thresholds is not None:
                self._gc.set_threshold(*self._thresholds)
            self._installed = False

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return  # young collections walk young objects only: cheap
        if phase == "start":
            self._started_cpu = self._cpu()
            return
        cost = self._cpu() - self._started_cpu
        self.full_collections += 1
        if cost >= self.freeze_after:
            self._gc.freeze()  # every survivor of this collection: live, long-lived
            self.freezes += 1
            log.debug(
                "heap: a full collection cost %.0f ms of CPU; %d objects frozen",
                cost * 1000,
                self._gc.get_freeze_count(),
            )

    def reclaim(self) -> int:
        """Collect the whole heap once (frozen objects included) and freeze what
        survived; returns how many objects were garbage."""
        started = time.perf_counter()
        self._gc.unfreeze()
        freed = self._gc.collect()
        self._gc.freeze()
        self.reclaims += 1
        self.reclaimed += freed
        log.info(
            "heap: reclaimed %d objects of cyclic garbage in %.0f ms; %d objects frozen",
            freed,
            (time.perf_counter() - started) * 1000,
            self._gc.get_freeze_count(),
        )
        return freed

    async def reclaim_every(self, clock: Clock) -> None:
        """Reclaim every :attr:`reclaim_seconds` of ``clock``, until cancelled."""
        while True:
            await clock.sleep(self.reclaim_seconds)
            self.reclaim()
