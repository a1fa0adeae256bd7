"""Coarse deadlines for many waiting requests on one timer.

The router waits for many things at once (a response head, a race); giving
each its own ``loop.call_later`` costs more than the request's own work on a
proxy's hot path (uvloop allocates and later frees a libuv handle per timer).
:class:`Deadlines` checks every watched item each ``tick`` (50 ms) instead,
and only while something is watched, so a deadline fires at most one tick
late.
"""

from __future__ import annotations

import asyncio
from typing import Final, Protocol

TICK: Final = 0.05  # seconds between checks (the precision of every deadline)


class Expirable(Protocol):
    """What a deadline watches (a response awaiting its head, a race); an asyncio
    future fits too."""

    def done(self) -> bool: ...

    def set_exception(self, exc: BaseException, /) -> None: ...


class Deadlines:
    """Coarse timeouts for many items on one timer (see the module docstring).

    An item added with a deadline (loop time) gets a :class:`TimeoutError`
    through ``set_exception`` at most :data:`TICK` seconds after it, unless it
    is done or discarded first; the timer runs only while something is watched.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, tick: float = TICK) -> None:
        self._loop = loop
        self._tick = tick
        self._watched: dict[Expirable, float] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, item: Expirable, deadline: float) -> None:
        self._watched[item] = deadline
        if self._timer is None:
            self._timer = self._loop.call_later(self._tick, self._check)

    def discard(self, item: Expirable) -> None:
        self._watched.pop(item, None)

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
        for item in [i for i, deadline in watched.items() if deadline <= now]:
            del watched[item]
            if not item.done():
                item.set_exception(TimeoutError("no response in time"))
        self._timer = self._loop.call_later(self._tick, self._check) if watched else None
