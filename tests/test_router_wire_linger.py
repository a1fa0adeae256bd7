"""An early answer while the client still sends its body closes gracefully.

A 413 at once (a Content-Length over the limit), a 400 for a broken chunk: the
router answers before it read the request, and closing the socket with bytes
unread resets the connection (TCP RST), which may lose the answer for a
client that sends its whole body before it reads. The router half-closes,
reads and drops the rest (lingering close, ``skyctl.router.linger``), within
bounds a hostile client cannot stretch.
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
from tests.test_router_hostile import Raw, status
from tests.test_router_tls import Certs, certs

__all__ = ["certs"]  # the fixture, used by name


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with open_harness() as harness:
        yield harness


def _send_body_then_read(port: int, head: bytes, body_bytes: int) -> tuple[bytes, int]:
    """A blocking client that sends its whole body before it reads (as many do): what it
    read, and how many body bytes it got to send before the router stopped reading."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    try:
        sock.sendall(head)
        sent = 0
        chunk = b"x" * 65536
        try:
            while sent < body_bytes:
                sent += sock.send(chunk)
        except OSError:
            pass
        got = b""
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                got += data
        except OSError:
            pass
        return got, sent
    finally:
        sock.close()


async def test_a_413_at_once_reaches_a_client_still_sending_its_body(h: Harness) -> None:
    replica = await h.replica(1)
    _, url = await h.router([replica.backend], section(max_body_bytes=1 << 20))
    port = int(url.rsplit(":", 1)[1])
    head = b"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 4194304\r\n\r\n"
    got, sent = await asyncio.to_thread(_send_body_then_read, port, head, 4 << 20)
    assert status(got) == 413 and b"connection: close" in got.lower()
    assert sent == 4 << 20  # the router read (and dropped) the rest of the body
    assert replica.hits == 0


async def test_a_400_for_a_broken_chunk_reaches_a_client_still_sending(h: Harness) -> None:
    replica = await h.replica(1)
    _, url = await h.router([replica.backend])
    port = int(url.rsplit(":", 1)[1])
    head = b"POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    got, sent = await asyncio.to_thread(_send_body_then_read, port, head, 4 << 20)
    assert status(got) == 400 and replica.hits == 0
    assert sent == 4 << 20  # the router read (and dropped) the rest


async def test_a_client_that_keeps_sending_after_an_early_answer_is_cut(h: Harness) -> None:
    """Lingering is bounded: at most linger_bytes more are read and dropped."""
    replica = await h.replica(1)
    router, url = await h.router([replica.backend], section(max_body_bytes=1 << 20))
    assert router._front is not None
    router._front.linger_bytes = 1 << 20
    port = int(url.rsplit(":", 1)[1])
    head = b"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 1073741824\r\n\r\n"
    _, sent = await asyncio.to_thread(_send_body_then_read, port, head, 1 << 30)
    assert sent < 64 << 20  # 1 MiB dropped, then cut (plus the sockets' buffers)


async def test_a_client_that_stops_sending_but_never_closes_is_cut(h: Harness) -> None:
    replica = await h.replica(1)
    router, url = await h.router([replica.backend], section(max_body_bytes=1 << 20))
    assert router._front is not None
    router._front.linger_idle = 0.2
    raw = await Raw.open(url)
    try:
        await raw.send(b"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 4194304\r\n\r\nxx")
        answer = await raw.read_all()  # the router's half-close: the answer, then EOF
        assert status(answer) == 413
        front = router._front
        assert front is not None
        await eventually(lambda: not front.connections, "the lingering connection closed")
    finally:
        await raw.close()


def _tls_send_body_then_read(
    port: int, context: ssl.SSLContext, head: bytes, body_bytes: int
) -> tuple[bytes, int]:
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(head)
        sent = 0
        try:
            while sent < body_bytes:
                sent += sock.send(b"x" * 65536)
        except OSError:
            pass
        got = b""
        try:
            while b"\r\n\r\n" not in got:
                data = sock.recv(65536)
                if not data:
                    break
                got += data
        except OSError:
            pass
        return got, sent


async def test_over_tls_a_413_at_once_reaches_a_client_still_sending(
    h: Harness, certs: Certs
) -> None:
    """No half-close over TLS: the router reads and drops the body, then closes."""
    replica = await h.replica(1)
    sec = replace(section(max_body_bytes=1 << 20), tls=certs.tls)
    router, url = await h.router([replica.backend], sec)
    assert router._front is not None
    router._front.linger_idle = 0.5  # the client reads only once it sent it all
    port = int(url.rsplit(":", 1)[1])
    head = b"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 4194304\r\n\r\n"
    context = certs.client_context()
    got, sent = await asyncio.to_thread(_tls_send_body_then_read, port, context, head, 4 << 20)
    assert status(got) == 413 and sent == 4 << 20 and replica.hits == 0
    front = router._front
    await eventually(lambda: not front.connections, "the lingering connection closed")
