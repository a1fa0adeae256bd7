"""Fairness under a hostile client: one address cannot take every connection.

``service.router.max_connections_per_client`` (256 by default, of the 1024
``max_connections``) bounds the connections open from one client address; a
client holding more than the global cap gets 503 on its extra connections
while other clients are served.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from skyctl.spec import RouterOptions
from tests.helpers.waiting import eventually
from tests.test_router_helpers import Harness, open_harness, section
from tests.test_router_hostile import GET, Raw, port_of, status


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with open_harness() as harness:
        yield harness


async def from_address(url: str, source: str, data: bytes) -> bytes:
    """One request from the loopback address ``source`` (127.0.0.x), its answer."""
    sock = socket.socket()
    sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port_of(url)))
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        writer.write(data)
        return await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()


async def test_a_client_holding_more_than_the_cap_does_not_deny_others(h: Harness) -> None:
    assert RouterOptions().max_connections_per_client == 256
    replica = await h.replica(1)
    router, url = await h.router(
        [replica.backend], section(max_connections=8, max_connections_per_client=4)
    )
    held = [await Raw.open(url) for _ in range(10)]  # the hostile client: over the global cap
    try:
        assert router._front is not None
        front = router._front
        await eventually(lambda: len(front.connections) == 4, "four of its connections kept")
        refused = [await raw.read_all() for raw in held[4:]]
        assert all(status(a) == 503 and b"from this client" in a for a in refused)
        for source in ("127.0.0.2", "127.0.0.3"):  # other clients are served
            answer = await from_address(url, source, GET + b"Connection: close\r\n\r\n")
            assert status(answer) == 200
        for raw in held[:4]:  # and so are the hostile client's kept connections
            await raw.send(GET + b"\r\n")
            assert status(await raw.reader.readuntil(b"\r\n\r\n")) == 200
        await held[0].close()  # one closes: the client may open one again
        await eventually(lambda: front.per_client.get(b"127.0.0.1") == 3, "counted down")
        extra = await Raw.open(url)
        await extra.send(GET + b"Connection: close\r\n\r\n")
        assert status(await extra.read_all()) == 200
        await extra.close()
    finally:
        for raw in held:
            await raw.close()
    await eventually(lambda: front.per_client == {}, "every connection forgotten")
