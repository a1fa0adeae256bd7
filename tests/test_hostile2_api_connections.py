"""Clients that hold the controller API's connections cannot keep them.

aiohttp waited for a request head for an hour (and, before 3.14.x, for ever)
and took every connection: a local process opening thousands of connections
that send nothing, or a head a byte at a time, held the controller's file
descriptors (its store, launches, probes and embedded routers need them),
before any token was checked. The API's listener (``skyctl.http_guard``) closes a
connection with no request after ``head_seconds``, closes idle keep-alive
connections as soon, never cuts a request being answered, and beyond its
connection limit answers a one-line 503. A request aiohttp cannot parse was a
traceback in ``controller.log`` each (a loop of them filled the disk): now one
line a minute, counting the others.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from skyctl.clock import FakeClock
from skyctl.controller import Controller
from skyctl.controller.api import make_app
from skyctl.http_guard import MALFORMED_EVERY, GuardedSite, MalformedLog, make_runner
from tests.helpers.fake_controller import API_TOKEN as TOKEN
from tests.helpers.fake_controller import DEADLINE, Conn, fake_controller

HEAD_SECONDS = 0.5  # short for the test; a loop stalled as long would close a request too
LIMIT = 4


@pytest.fixture
async def controller(tmp_path: Path) -> AsyncIterator[Controller]:
    async with fake_controller(tmp_path) as controller:
        yield controller


class Now:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def now() -> Now:
    return Now()


@pytest.fixture
async def site(controller: Controller, now: Now) -> AsyncIterator[GuardedSite]:
    app = make_app(controller, TOKEN, lambda: None)
    runner = make_runner(app, head_seconds=HEAD_SECONDS, log=MalformedLog(now))
    await runner.setup()
    site = GuardedSite(
        runner, "127.0.0.1", 0, what="the controller API", limit=LIMIT, head_seconds=HEAD_SECONDS
    )
    await site.start()
    try:
        yield site
    finally:
        await runner.cleanup()


async def connect(site: GuardedSite) -> Conn:
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return await asyncio.open_connection("127.0.0.1", port)


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()


async def closed(conn: Conn) -> bool:
    """Whether the server closes the connection (reads to its end, within the deadline)."""
    try:
        async with asyncio.timeout(DEADLINE):
            while await conn[0].read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def answer(conn: Conn, path: str) -> tuple[int, bytes]:
    conn[1].write(get(path))
    async with asyncio.timeout(DEADLINE):
        status = int((await conn[0].readline()).split()[1])
        head = (await conn[0].readuntil(b"\r\n\r\n")).lower()
        length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
        return status, await conn[0].readexactly(length)


async def test_a_connection_that_sends_no_request_or_a_head_that_never_ends_is_closed(
    site: GuardedSite,
) -> None:
    silent = await connect(site)
    trickling = await connect(site)
    trickling[1].write(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")

    async def trickle() -> None:
        while not trickling[0].at_eof():
            trickling[1].write(b"X-Slow: 1\r\n")
            await asyncio.sleep(HEAD_SECONDS / 4)

    feeder = asyncio.ensure_future(trickle())
    try:
        assert await closed(silent)
        assert await closed(trickling)
    finally:
        feeder.cancel()
    assert not site.open  # the slots are free again


async def test_a_keep_alive_connection_left_idle_is_closed_after_its_answer(
    site: GuardedSite,
) -> None:
    conn = await connect(site)
    status, body = await answer(conn, "/v1/health")
    assert status == 200 and json.loads(body)["ok"] is True
    assert await closed(conn)


async def test_a_request_still_being_answered_is_not_cut(
    site: GuardedSite, controller: Controller
) -> None:
    conn = await connect(site)
    conn[1].write(get("/console/events"))  # one update a (fake) second, for ever
    async with asyncio.timeout(DEADLINE):
        assert b" 200 " in await conn[0].readline()
        await conn[0].readuntil(b"data: ")
        await conn[0].readuntil(b"\n\n")
    await asyncio.sleep(HEAD_SECONDS * 2)  # past the head deadline and the idle timeout
    assert isinstance(controller.clock, FakeClock)
    await controller.clock.advance(1.0)
    async with asyncio.timeout(DEADLINE):
        assert b"data: {" in await conn[0].readuntil(b"\n\n")  # (chunked)
    conn[1].close()


async def test_connections_beyond_the_limit_get_a_one_line_503_until_one_closes(
    site: GuardedSite,
) -> None:
    held = [await connect(site) for _ in range(LIMIT)]
    over = await connect(site)
    over[1].write(get("/v1/health"))
    async with asyncio.timeout(DEADLINE):
        reply = await over[0].read()
    assert reply.startswith(b"HTTP/1.1 503 ")
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1]) == {
        "error": "too many connections to the controller API",
        "exit_code": 1,
    }
    held[0][1].close()
    assert await closed(held[0])  # the server's side closes after it forgot the connection
    status, _ = await answer(await connect(site), "/v1/health")
    assert status == 200


async def test_malformed_requests_are_one_log_line_a_minute_not_a_traceback_each(
    site: GuardedSite, now: Now, caplog: pytest.LogCaptureFixture
) -> None:
    async def malformed(count: int) -> None:
        for _ in range(count):
            conn = await connect(site)
            conn[1].write(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
            async with asyncio.timeout(DEADLINE):
                assert b" 400 Bad Request" in await conn[0].readline()
            conn[1].close()

    caplog.set_level(logging.INFO)
    await malformed(20)
    now.t += MALFORMED_EVERY
    await malformed(1)
    lines = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert lines == [
        "malformed request refused with a 400: Invalid header token",
        "malformed request refused with a 400: Invalid header token (19 more since the last line)",
    ]
    assert not any(r.exc_info for r in caplog.records)  # no traceback
    assert not any("Error handling request" in r.getMessage() for r in caplog.records)
