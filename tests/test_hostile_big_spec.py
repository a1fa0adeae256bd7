"""A big spec is parsed off the controller's event loop.

PyYAML parses in pure Python: a spec near the 256 KiB limit (20,000 ``envs``,
say) takes seconds, and a submission parses it up to four times (checked,
redacted, re-checked, then opened for its runtime); an update more. All of it
ran on the controller's event loop: one ``serve up`` of a 230 KB spec with a
secret stalled the loop (ticks, probes, the API, the routers of
``controller run``) for 23 s, measured. Now those parses run in a thread.

The test holds every parse until the loop has run again: a parse on the loop
thread would wait out its deadline (the loop cannot run while it waits).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from skyctl import secrets as secrets_module
from skyctl.controller import Controller
from tests.helpers.fake_controller import fake_controller

SPEC = "name: web\nservice:\n  replicas: 1\nrun: sleep 1000\nsecrets:\n  TOKEN: abc\n"


@pytest.fixture
async def controller(tmp_path: Path) -> AsyncIterator[Controller]:
    async with fake_controller(tmp_path) as c:
        yield c


class HeldParses:
    """Wraps parse_spec: each call waits (up to a deadline) for the loop to have run."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real = real
        self.loop_ran = threading.Event()
        self.on_loop_thread: list[str] = []
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if not self.loop_ran.wait(10):  # never set: the loop is stuck in this very call
            self.on_loop_thread.append(threading.current_thread().name)
        self.loop_ran.clear()
        return self.real(*args, **kwargs)

    async def run(self, operation: Any) -> Any:
        self.loop_ran.clear()
        task = asyncio.ensure_future(operation)
        await asyncio.sleep(0)  # its first step runs (a parse on this thread: held there)
        while not task.done():
            self.loop_ran.set()  # the loop runs: a parse in a thread may go on
            await asyncio.sleep(0.01)
        return task.result()


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> HeldParses:
    held = HeldParses(secrets_module.parse_spec)
    monkeypatch.setattr(secrets_module, "parse_spec", held)
    return held


async def test_creating_a_service_parses_its_spec_off_the_event_loop(
    controller: Controller, parses: HeldParses
) -> None:
    await parses.run(controller.create_service(SPEC, None))
    assert parses.calls >= 2 and parses.on_loop_thread == []


async def test_updating_a_service_parses_its_spec_off_the_event_loop(
    controller: Controller, parses: HeldParses
) -> None:
    await parses.run(controller.create_service(SPEC, None))
    before = parses.calls
    await parses.run(controller.update_service("web", SPEC.replace("1000", "2000"), None))
    assert parses.calls > before and parses.on_loop_thread == []
