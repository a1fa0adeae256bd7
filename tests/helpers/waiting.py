"""Waiting in tests for what real I/O brings (sockets, processes, SDK threads).

Time on the injected clock is advanced (``FakeClock.advance``), never waited
for; this is only for what no fake clock can hurry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest


async def eventually(
    check: Callable[[], object], what: str = "condition", limit: float = 20.0
) -> None:
    """Poll until ``check()`` is truthy; fail, naming ``what``, after ``limit`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not check():
        if loop.time() > deadline:
            pytest.fail(f"never happened: {what}")
        await asyncio.sleep(0.005)


def wait_until(check: Callable[[], object], seconds: float = 30.0, every: float = 0.1) -> bool:
    """Poll ``check()`` (from synchronous tests) every ``every`` seconds until truthy or
    ``seconds`` pass; its last value as a bool, so ``assert wait_until(...), details``
    names what never happened. A check that runs the CLI (~0.5 s of CPU a call) polls
    every second or so."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return bool(check())


async def step_until(
    clock: Any, check: Callable[[], object], seconds: float = 300.0, step: float = 0.5
) -> None:
    """Advance a FakeClock in ``step``s until ``check()`` is truthy, letting real I/O
    (probes on loopback, SDK calls in threads) run between steps; fail after
    ``seconds`` of fake time."""
    waited = 0.0
    while not check():
        assert waited < seconds, f"not reached within {seconds} fake seconds"
        await clock.advance(step)
        for _ in range(3):
            await asyncio.sleep(0.005)
        waited += step
