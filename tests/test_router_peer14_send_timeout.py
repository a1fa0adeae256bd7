"""A client that stops reading its response does not hold its replica for ever.

Before, a client that opened a streamed response and read nothing more kept the
request in flight, and the replica's connection blocked on back-pressure, with
no end (8 s of 8 watched, ``stream_timeout_seconds`` 1 s: the replica was never
silent, the client was). One address may hold 256 such connections: enough
to take every generation slot of the replicas. Now a client that accepts no
byte for ``load_balancer.stream_timeout_seconds`` is cut, as nginx's
``send_timeout`` does; a slow reader that keeps taking bytes is not.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp import web

from tests.helpers.waiting import eventually
from tests.test_router_helpers import FakeReplica, Harness, in_flight, open_harness, section
from tests.test_router_hostile import port_of


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with open_harness() as harness:
        yield harness


async def endless(_: FakeReplica, request: web.BaseRequest) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    while True:  # never silent: only the client's back-pressure stops it
        await response.write(b"x" * 16384)


async def stalled_client(url: str) -> socket.socket:
    """A client with a small receive buffer that sends a GET and reads nothing."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port_of(url)))
    sock.send(b"GET /stream HTTP/1.1\r\nHost: svc\r\n\r\n")
    return sock


async def test_a_client_accepting_no_bytes_is_cut_and_frees_its_replica(h: Harness) -> None:
    replica = await h.replica(1, behaviour=endless)
    sec = replace(section(), stream_timeout_seconds=0.5)
    router, url = await h.router([replica.backend], sec)
    sock = await stalled_client(url)
    try:
        await eventually(lambda: in_flight(router) == {1: 1}, "the stream under way")
        await eventually(lambda: in_flight(router) == {1: 0}, "the request ended", 20)
        await eventually(lambda: replica.hung_up == 1, "the replica saw the disconnect")
        assert router._front is not None and not router._front.connections
    finally:
        sock.close()


async def test_a_client_taking_its_bytes_through_pauses_is_not_cut(h: Harness) -> None:
    total = 4 << 20

    async def sized(_: FakeReplica, request: web.BaseRequest) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(total // 16384):
            await response.write(b"x" * 16384)
        await response.write_eof()
        return response

    replica = await h.replica(1, behaviour=sized)
    sec = replace(section(), stream_timeout_seconds=0.5)
    _, url = await h.router([replica.backend], sec)
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(url))
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n")
        got = 0
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            if not chunk:
                break
            got += len(chunk)
        assert got > total  # the head, the chunk framing and every byte of the body
    finally:
        writer.close()
