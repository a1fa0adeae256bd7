"""The injected clock.

Everything that needs the time or wants to wait takes a :class:`Clock`.
Production code uses :class:`SystemClock`; tests and the simulator use
:class:`FakeClock`, which only moves when told to, so no test sleeps for real.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""


class SystemClock:
    """Wall-clock time and real sleeps."""

    # time.time itself, not a method calling it: the router reads the clock a few
    # times per request, and a C function costs no Python frame
    now = staticmethod(time.time)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class SteadyClock:
    """Time of day that a wall-clock step cannot move: the wall clock is read
    once, at construction, and then advanced by the monotonic clock.

    The controller measures initial delays, probe periods, backoff and billed
    time as differences of ``now()``; an NTP step (or an operator's ``date -s``)
    of the wall clock must not age a STARTING replica by an hour, stall a backoff
    for hours or shrink a bill. Timestamps drift from the wall clock by the size
    of a step until the next controller start, which reads the wall clock anew.
    ``wall``/``monotonic``/``sleep`` are injectable so tests can step a fake wall.

    The default steady source is :func:`boottime`: unlike ``CLOCK_MONOTONIC`` it
    keeps counting while the machine is suspended, so a laptop that slept for an
    hour does not leave every timestamp an hour behind the wall clock.
    """

    def __init__(
        self,
        wall: Callable[[], float] | None = None,
        monotonic: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self._monotonic = monotonic or boottime
        self._sleep = sleep
        self._origin = (wall or time.time)() - self._monotonic()

    def now(self) -> float:
        return self._origin + self._monotonic()

    async def sleep(self, seconds: float) -> None:
        if self._sleep is not None:
            await self._sleep(seconds)
        else:
            await asyncio.sleep(max(0.0, seconds))


def boottime() -> float:
    """Seconds of a clock no wall-clock step moves and that counts suspended time
    (Linux ``CLOCK_BOOTTIME``); elsewhere :func:`time.monotonic`."""
    return time.clock_gettime(_BOOTTIME) if _BOOTTIME is not None else time.monotonic()


_BOOTTIME: int | None = getattr(time, "CLOCK_BOOTTIME", None)


class FakeClock:
    """A clock that advances only through :meth:`advance`.

    Sleepers wake, in deadline order, when the clock passes their deadline.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        await fut

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking sleepers due by then one deadline at a time."""
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            if not fut.done():
                fut.set_result(None)
            # let the woken task run before the next deadline fires
            for _ in range(5):
                await asyncio.sleep(0)
        self._now = target
        for _ in range(5):
            await asyncio.sleep(0)

    @property
    def pending_sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())
