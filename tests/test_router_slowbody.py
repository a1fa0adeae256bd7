"""A request body trickled to the router is cut; a slow upload that keeps a rate is not.

The router cut a body only after ``client_body_timeout_seconds`` of silence, so a
client sending a byte a little more often held its connection, and the
replica's connection its body streams to, for ever (one address may hold 256).
Now a body may take ``client_body_timeout_seconds`` plus one second per
``client_body_min_bytes_per_second`` bytes received (listener.py): a trickle is a
408, a large prompt uploaded slowly but steadily still reaches its replica.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.test_router_helpers import FakeReplica, Harness, open_harness, section

BODY_SECONDS = 0.3  # the first allowance, short for the test
RATE = 1000.0  # bytes a second
DEADLINE = 20.0  # for what must happen soon; never asserted as a duration


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with open_harness() as harness:
        yield harness


async def echo(replica: FakeReplica, request: web.BaseRequest) -> web.Response:
    return web.Response(body=await request.read())


async def post_slowly(url: str, length: int, piece: bytes, every: float) -> bytes:
    """Send a head declaring ``length`` bytes, then ``piece`` every ``every`` seconds
    until the router answers; the answer (up to the router's close)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))
    writer.write(
        b"POST / HTTP/1.1\r\nHost: svc\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % length
    )

    async def feed() -> None:
        for _ in range(length // len(piece)):
            await asyncio.sleep(every)
            writer.write(piece)

    feeder = asyncio.ensure_future(feed())
    try:
        async with asyncio.timeout(DEADLINE):
            return await reader.read()  # a test stuck here fails: no 408, nor an answer
    finally:
        feeder.cancel()
        writer.close()


@pytest.mark.parametrize("buffer", [1 << 20, 10], ids=["buffered", "streamed"])
async def test_a_body_trickled_a_byte_at_a_time_gets_408(h: Harness, buffer: int) -> None:
    replica = await h.replica(1, behaviour=echo)
    sec = section(
        client_body_timeout_seconds=BODY_SECONDS,
        client_body_min_bytes_per_second=RATE,
        max_buffer_bytes=buffer,
    )
    router, url = await h.router([replica.backend], sec)
    # never silent for BODY_SECONDS, but 20 bytes a second where 1000 are due
    answer = await post_slowly(url, 100_000, b"x", BODY_SECONDS / 6)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"request body too slow" in answer
    assert replica.finished == 0 and h.backend_errors == []
    assert router.replica_stats()[1]["in_flight"] == 0


async def test_a_slow_upload_that_keeps_the_minimum_rate_goes_through(h: Harness) -> None:
    replica = await h.replica(1, behaviour=echo)
    # a first allowance of 1 s: a loaded machine can stall this loop (the sender's and
    # the router's) for a few tenths of a second before the first piece goes out
    sec = section(client_body_timeout_seconds=1.0, client_body_min_bytes_per_second=RATE)
    _, url = await h.router([replica.backend], sec)
    # 200 bytes every 0.04 s (5000 a second) for 2.4 s: past the first allowance
    answer = await post_slowly(url, 12000, b"y" * 200, 0.04)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:80]
    assert answer.endswith(b"y" * 12000)
