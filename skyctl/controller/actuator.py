"""Carrying out a plan off the tick: provider calls as per-replica tasks.

The tick records an intent (a replica PENDING/PROVISIONING to launch, or
SHUTTING_DOWN to terminate) and hands the call to the :class:`Actuator`, which
runs it as its own task and returns at once. Each call:

- runs under a per-call deadline on the injected clock: a call that does not
  answer in time is cancelled and becomes a :class:`~skyctl.errors.TransientError`
  naming the call and the deadline, so a hung provider is a visible, retried
  failure, never a stuck controller;
- holds one slot of its provider's concurrency bound (a semaphore per provider,
  ``Provider.max_concurrent_calls``), so a launch burst cannot swamp a cloud API
  or the machine;
- is keyed (service, replica or instance): one action per key at a time, so a
  tick never starts a second launch of a replica whose first is still running.

When a task ends (outcome recorded by the task itself), ``on_done(service)``
wakes that service's next tick. A key that failed backs off exponentially
(:meth:`backoff`) before the tick may start it again. Nothing here is durable:
the store holds the intents, so a restarted controller starts the calls again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from skyctl.clock import Clock
from skyctl.errors import TransientError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: default per-call deadlines (clock seconds) by kind of call
DEADLINES: dict[str, float] = {
    "launch": 600.0,  # returns once the provider accepted it (PENDING), not when booted
    "terminate": 300.0,
    "observe": 60.0,  # list_instances, offerings
}
#: retry delay after the n-th consecutive failure of one key: base * 2**(n-1), capped
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 120.0
#: concurrent calls per provider unless the provider says otherwise
DEFAULT_CONCURRENCY = 16


class Actuator:
    def __init__(
        self,
        clock: Clock,
        *,
        on_done: Callable[[str], None],
        deadlines: dict[str, float] | None = None,
    ) -> None:
        self._clock = clock
        self._on_done = on_done
        self.deadlines = {**DEADLINES, **(deadlines or {})}
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._sems: dict[str, asyncio.Semaphore] = {}
        self._failures: dict[tuple[str, str], int] = {}
        self._not_before: dict[tuple[str, str], float] = {}
        self._limits: dict[str, int] = {}

    # ---------------------------------------------------------------- tasks
    def busy(self, service: str, key: str) -> bool:
        return (service, key) in self._tasks

    def ready(self, service: str, key: str) -> bool:
        """Neither running nor backing off: the tick may start this key now."""
        k = (service, key)
        return k not in self._tasks and self._not_before.get(k, 0.0) <= self._clock.now()

    def in_flight(self, service: str) -> int:
        return sum(1 for s, _ in self._tasks if s == service)

    @property
    def idle(self) -> bool:
        """No call in flight for any service (a purged service's terminations included)."""
        return not self._tasks

    def start(self, service: str, key: str, work: Coroutine[Any, Any, None]) -> bool:
        """Run ``work`` as the task of (service, key); False (and ``work`` closed)
        when that key already has a task."""
        k = (service, key)
        if k in self._tasks:
            work.close()
            return False
        task = asyncio.get_running_loop().create_task(self._run(k, work), name=f"{service}:{key}")
        self._tasks[k] = task
        return True

    async def _run(self, k: tuple[str, str], work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in an outcome handler must not kill the controller
            log.exception("%s: %s failed", *k)
            self.failed(*k)
        finally:
            if self._tasks.get(k) is asyncio.current_task():
                del self._tasks[k]
            self._on_done(k[0])

    # ------------------------------------------------------------ backoff
    def failed(self, service: str, key: str) -> float:
        """Record a failure of (service, key); returns the delay before its next try."""
        k = (service, key)
        n = self._failures.get(k, 0) + 1
        self._failures[k] = n
        delay = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (n - 1))
        self._not_before[k] = self._clock.now() + delay
        return delay

    def succeeded(self, service: str, key: str) -> None:
        self._failures.pop((service, key), None)
        self._not_before.pop((service, key), None)

    def forget(self, service: str, key: str) -> None:
        """The key's subject is gone: drop its backoff (bounded memory)."""
        self.succeeded(service, key)

    def retry_at(self, service: str, key: str) -> float | None:
        return self._not_before.get((service, key))

    # -------------------------------------------------------------- calls
    async def call(self, cloud: str, kind: str, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """``fn()`` under ``cloud``'s concurrency bound and the deadline of ``kind``."""
        sem = self._sems.get(cloud)
        if sem is None:
            sem = self._sems[cloud] = asyncio.Semaphore(self.limit_for(cloud))
        async with sem:
            return await self.deadline(self.deadlines[kind], what, fn())

    def limit_for(self, cloud: str) -> int:
        return self._limits.get(cloud, DEFAULT_CONCURRENCY)

    def set_limit(self, cloud: str, limit: int) -> None:
        """The provider's own bound (before its first call)."""
        if cloud not in self._sems:
            self._limits[cloud] = max(1, limit)

    async def deadline(self, seconds: float, what: str, aw: Awaitable[T]) -> T:
        """``aw`` unless it takes longer than ``seconds`` on the clock: then it is
        cancelled and a TransientError says which call timed out."""
        task = asyncio.ensure_future(aw)
        timer = asyncio.ensure_future(self._clock.sleep(seconds))
        try:
            await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            timer.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise TransientError(f"{what}: no answer within {seconds:g}s (deadline)")

    async def close(self) -> None:
        """Cancel every running call (the store keeps the intents)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
