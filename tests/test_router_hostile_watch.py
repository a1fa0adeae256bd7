"""A corrupt routing watch answer is a failed poll, not the router process's end.

The router process follows the controller's ``GET /v1/routing/watch``. An
answer that was JSON but not a watch answer (a list, ``null``, an object
without ``epoch`` and ``version``) reached ``answer["version"]`` outside the
watch's guard: the watch task ended, and with it the router process (every
endpoint closed; the supervisor starts another, which met the same answer).
Now such an answer is a failed poll: retried with backoff, its reason kept
for ``/readyz`` and logged once, and the endpoints keep serving.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from skyctl.clock import SystemClock
from skyctl.router.endpoints import Endpoints
from skyctl.router.process import Watch
from skyctl.routing_wire import WATCH_PATH
from skyctl.secrets import Secrets
from tests.helpers.waiting import eventually


@pytest.fixture
async def endpoints(tmp_path: Path) -> AsyncIterator[Endpoints]:
    e = Endpoints(Secrets(tmp_path / "secret.key"), SystemClock())
    yield e
    await e.close(1.0)


@pytest.mark.parametrize(
    "body",
    [
        b"[1, 2]",
        b"null",
        b'"text"',
        b"{}",
        b'{"epoch": "e", "version": "7"}',
        b'{"epoch": 5, "version": 1}',
        b'{"epoch": "e", "version": 1, "services": [1]}',
    ],
)
async def test_a_corrupt_watch_answer_is_retried_and_the_watch_goes_on(
    endpoints: Endpoints, body: bytes
) -> None:
    polls: list[int] = []

    async def watch_answer(_: web.Request) -> web.Response:
        polls.append(1)
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get(WATCH_PATH, watch_answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    watch = Watch(endpoints, lambda: (base, "t"), "t")
    try:
        async with aiohttp.ClientSession() as session:
            task = asyncio.create_task(watch.run(session))
            try:
                await eventually(lambda: len(polls) >= 3 or task.done(), "three polls", 20)
                assert not task.done(), task.exception()  # the watch (the process) lives on
                assert watch.error is not None and "not a routing watch answer" in watch.error
                assert not watch.connected
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    finally:
        await runner.cleanup()
