"""Coarse deadlines for many futures on one timer.

The router waits on a future per request (a response head, a race); giving
each its own ``loop.call_later`` costs more than the request's own work on a
proxy's hot path (uvloop allocates and later frees a libuv handle per timer).
:class:`Deadlines` checks every watched future each ``tick`` (50 ms) instead,
and only while some future is watched, so a deadline fires at most one tick
late.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

TICK = 0.05  # seconds between checks (the precision of every deadline)


class Expirable(Protocol):
    """What a deadline watches: an asyncio future, or anything failing the same way."""

    def done(self) -> bool: ...

    def set_exception(self, exc: BaseException, /) -> None: ...


class Deadlines:
    """Coarse timeouts for many futures on one timer.

    A future (or :class:`Expirable`) added with a deadline (loop time) fails with
    :class:`TimeoutError`
    at most :data:`TICK` seconds after it; the timer runs only while some
    future is watched. A timer per request costs more than the request's own
    work in a proxy (uvloop allocates a libuv handle for each one).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, tick: float = TICK) -> None:
        self._loop = loop
        self._tick = tick
        self._watched: dict[Expirable, float] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, future: Expirable, deadline: float) -> None:
        self._watched[future] = deadline
        if self._timer is None:
            self._timer = self._loop.call_later(self._tick, self._check)

    def discard(self, future: Expirable) -> None:
        self._watched.pop(future, None)

    def __len__(self) -> int:
        return len(self._watched)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._watched.clear()

    def _check(self) -> None:
        now = self._loop.time()
        watched = self._watched
        for future in [f for f, deadline in watched.items() if deadline <= now]:
            del watched[future]
            if not future.done():
                future.set_exception(TimeoutError("no response in time"))
        self._timer = self._loop.call_later(self._tick, self._check) if watched else None
