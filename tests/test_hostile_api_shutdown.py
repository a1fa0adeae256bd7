"""A followed replica log does not hold up the controller's shutdown.

``skyctl serve logs NAME --replica N -f`` keeps ``GET .../log?follow=1`` open
while the replica lives. Closing the API (``skyctl controller stop``, SIGTERM)
waited for that stream: aiohttp gives open handlers its shutdown timeout
(60 s, and the stream polled on past it), so with a log followed the
controller did not stop within the 30 s ``controller stop`` waits. The stream
now ends once the API closes, as the console's event stream does.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from skyctl.controller.api import make_app
from tests.test_controller import Harness

TOKEN = "s" * 32


async def test_a_followed_log_ends_when_the_api_closes(
    h: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid = await h.one_ready_replica("web")
    log = tmp_path / "replica.log"
    log.write_bytes(b"serving\n")
    monkeypatch.setattr(h.controller, "log_path", lambda name, replica: log)
    server = TestServer(make_app(h.controller, TOKEN, lambda: None))
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        resp = await session.get(
            server.make_url(f"/v1/services/web/replicas/{rid}/log?follow=1"),
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert resp.status == 200
        assert await resp.content.readline() == b"serving\n"  # the replica lives on
        await server.app.shutdown()  # what closing the API does first (on_shutdown)
        # the stream ends (a deadline on the socket, not a timing: it never ended)
        assert await asyncio.wait_for(resp.content.read(), 30) == b""
        resp.release()
    await server.close()
