"""Connection limits hold on a TLS endpoint too (``service.tls``).

A connection counts towards ``max_connections`` and
``max_connections_per_client`` from the moment it is accepted, not once its
TLS handshake is done: before, a client opening TCP connections and never
starting a handshake held each for the 30 s handshake timeout, uncounted, so
one address could take every file descriptor of the router process (2,040
connections on an endpoint capped at 64, in a probe, until EMFILE) and deny
every other client and service.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from tests.helpers.waiting import eventually
from tests.test_router_helpers import Harness, open_harness, section
from tests.test_router_hostile import GET, Raw, port_of, status
from tests.test_router_tls import Certs, certs

__all__ = ["certs"]  # the fixture, used by name


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with open_harness() as harness:
        yield harness


async def tls_get(url: str, context: ssl.SSLContext, source: str | None = None) -> bytes:
    """One GET over TLS from the loopback address ``source``; the whole answer."""
    sock = socket.socket()
    if source is not None:
        sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port_of(url)))
    reader, writer = await asyncio.open_connection(
        sock=sock, ssl=context, server_hostname="127.0.0.1"
    )
    try:
        writer.write(GET + b"Connection: close\r\n\r\n")
        return await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()


async def test_connections_waiting_for_a_handshake_count_towards_the_limits(
    h: Harness, certs: Certs
) -> None:
    replica = await h.replica(1)
    router, url = await h.router(
        [replica.backend],
        replace(section(max_connections=8, max_connections_per_client=4), tls=certs.tls),
    )
    assert router._front is not None
    front = router._front
    held = [await Raw.open(url) for _ in range(10)]  # TCP only: no handshake started
    try:
        await eventually(lambda: len(front.connections) == 4, "four of its connections kept")
        for raw in held[4:]:  # closed at once, not after the handshake timeout
            assert await raw.read_all() == b""
        context = certs.client_context()
        for source in ("127.0.0.2", "127.0.0.3"):  # other clients are served
            assert status(await tls_get(url, context, source)) == 200
        for raw in held[:4]:  # the kept ones may still shake hands and be served
            await raw.writer.start_tls(context, server_hostname="127.0.0.1")
            await raw.send(GET + b"\r\n")
            assert status(await raw.reader.readuntil(b"\r\n\r\n")) == 200
    finally:
        for raw in held:
            await raw.close()
    await eventually(lambda: front.per_client == {}, "every connection forgotten")


async def test_a_failed_handshake_is_forgotten(h: Harness, certs: Certs) -> None:
    replica = await h.replica(1)
    router, url = await h.router(
        [replica.backend],
        replace(section(max_connections=8, max_connections_per_client=2), tls=certs.tls),
    )
    assert router._front is not None
    front = router._front
    for _ in range(3):  # more than the client's share: each one counted down again
        raw = await Raw.open(url)
        await raw.send(GET + b"\r\n")  # plain HTTP: the handshake fails
        assert b"HTTP/1.1" not in await raw.read_all()
        await raw.close()
        await eventually(lambda: front.per_client == {}, "the connection forgotten")
    assert status(await tls_get(url, certs.client_context())) == 200
