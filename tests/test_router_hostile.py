"""The router against hostile clients and replicas, as a proxy must (RFC 9110/9112).

Malformed input goes over raw sockets, so nothing in between fixes it up.
Every test runs in a harness that checks, after the router, replicas and
client are closed, that no asyncio task the test started is left running.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp import web

from skyctl.router import headers
from tests.helpers.waiting import eventually
from tests.test_router_helpers import (
    FakeReplica,
    Harness,
    open_harness,
    section,
)


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    """The router harness, then a check that no task of the test outlives it."""
    before = asyncio.all_tasks()
    async with open_harness() as harness:
        yield harness
    current = asyncio.current_task()
    await eventually(
        lambda: all(t.done() for t in asyncio.all_tasks() - before if t is not current),
        "no task left running",
    )


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


class Raw:
    """One raw client connection to the router."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str, rcvbuf: int | None = None) -> Raw:
        sock = None
        if rcvbuf is not None:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port_of(url)))
            reader, writer = await asyncio.open_connection(sock=sock)
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", port_of(url))
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_all(self) -> bytes:
        """Everything until the router closes the connection (bounded wait)."""
        got = b""
        while True:
            chunk = await asyncio.wait_for(self.reader.read(65536), 10)
            if not chunk:
                return got
            got += chunk

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


async def exchange(url: str, data: bytes) -> bytes:
    """Send ``data``, return all the router answers before it closes."""
    raw = await Raw.open(url)
    try:
        await raw.send(data)
        return await raw.read_all()
    finally:
        await raw.close()


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer else 0


# ---- malformed and smuggling-prone requests ----------------------------------------------

GET = b"GET / HTTP/1.1\r\nHost: svc\r\n"
SMUGGLING = [
    (GET + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (GET + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", 400),
    (GET + b"Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", 400),
    (GET + b"Content-Length: 4\r\nContent-Length: 4\r\n\r\nabcd", 400),
    (GET + b"Content-Length: 4, 4\r\n\r\nabcd", 400),
    (GET + b"Content-Length: +4\r\n\r\nabcd", 400),
    (GET + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400),
    (GET + b"Transfer-Encoding: gzip\r\n\r\n", 400),
    (GET + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    (GET + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (GET + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),  # space before colon
    (GET + b"X-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n", 400),  # obs-fold
    (GET + b"X-A: 1\nTransfer-Encoding: chunked\r\n\r\n", 400),  # bare LF
    (GET + b"X-A: a\x00b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host (RFC 9112 3.2)
    (b"GET / HTTP/1.1 extra\r\n\r\n", 400),
    (b"G(T / HTTP/1.1\r\n\r\n", 400),
    (b"GET gopher://evil/ HTTP/1.1\r\n\r\n", 400),  # absolute-form: http(s) only
    (b"GET / HTTP/9.9\r\n\r\n", 505),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # TLS to a plain port
]


@pytest.mark.parametrize(("request_bytes", "expected"), SMUGGLING)
async def test_malformed_and_ambiguous_requests_are_refused_and_never_forwarded(
    h: Harness, request_bytes: bytes, expected: int
) -> None:
    replica = await h.replica(1)
    _, url = await h.router([replica.backend])
    answer = await exchange(url, request_bytes)
    assert status(answer) == expected
    assert b"Connection: close" in answer.split(b"\r\n\r\n")[0]
    assert replica.hits == 0


@pytest.mark.parametrize(
    "chunks",
    [
        b"zz\r\nab\r\n0\r\n\r\n",  # not hex
        b"0x2\r\nab\r\n0\r\n\r\n",
        b" 2\r\nab\r\n0\r\n\r\n",  # whitespace before the size
        b"2\r\nabXY0\r\n\r\n",  # data not followed by CRLF
        b"2;a=\nb\r\nab\r\n0\r\n\r\n",  # bare LF in an extension
        b"-1\r\n\r\n",
    ],
)
async def test_invalid_chunked_bodies_get_400(h: Harness, chunks: bytes) -> None:
    replica = await h.replica(1)
    _, url = await h.router([replica.backend])
    head = b"POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert status(await exchange(url, head + chunks)) == 400
    assert replica.hits == 0


# ---- sizes -------------------------------------------------------------------------------


async def test_a_declared_body_over_the_limit_gets_413_without_being_read(h: Harness) -> None:
    replica = await h.replica(1)
    _, url = await h.router([replica.backend], section(max_body_bytes=1000))
    raw = await Raw.open(url)
    try:  # Expect: 100-continue: the client must not even send the body
        await raw.send(
            b"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 1001\r\nExpect: 100-continue\r\n\r\n"
        )
        answer = await raw.read_all()
    finally:
        await raw.close()
    assert status(answer) == 413 and b"100 Continue" not in answer
    assert replica.hits == 0


async def test_a_body_at_the_limit_passes(h: Harness) -> None:
    replica = await h.replica(1)
    _, url = await h.router([replica.backend], section(max_body_bytes=1000))
    async with h.client.post(url + "/", data=b"x" * 1000) as resp:
        assert resp.status == 200


@pytest.mark.parametrize("buffer", [1 << 20, 10], ids=["buffered", "streamed"])
async def test_a_chunked_body_growing_past_the_limit_gets_413(h: Harness, buffer: int) -> None:
    async def read_then_answer(replica: FakeReplica, request: web.BaseRequest) -> web.Response:
        await request.read()
        return web.Response(text="read it all")

    replica = await h.replica(1, behaviour=read_then_answer)
    sec = section(max_body_bytes=1000, max_buffer_bytes=buffer)
    router, url = await h.router([replica.backend], sec)
    head = b"POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer = await exchange(url, head + b"200\r\n" + b"x" * 512 + b"\r\n" + b"200\r\n")
    assert status(answer) == 413
    # a streamed upload reached the replica and was cut; it is not blamed for it
    assert h.backend_errors == [] and router.replica_stats()[1]["errors"] == 0
    assert replica.finished == 0


async def test_a_head_over_the_limit_gets_431(h: Harness) -> None:
    replica = await h.replica(1)
    _, url = await h.router([replica.backend], section(max_header_bytes=2048))
    answer = await exchange(url, GET + b"X-Big: " + b"a" * 3000 + b"\r\n\r\n")
    assert status(answer) == 431 and replica.hits == 0


async def test_too_many_header_lines_get_431(h: Harness) -> None:
    replica = await h.replica(1)
    _, url = await h.router([replica.backend], section(max_headers=20))
    close = b"Connection: close\r\n"
    assert status(await exchange(url, GET + b"X-A: 1\r\n" * 19 + close + b"\r\n")) == 431
    assert status(await exchange(url, GET + b"X-A: 1\r\n" * 18 + close + b"\r\n")) == 200
    assert replica.hits == 1


# ---- hop-by-hop headers ---------------------------------------------------------------------


async def test_hop_by_hop_headers_do_not_cross_the_router_in_either_direction(
    h: Harness,
) -> None:
    async def hop_back(replica: FakeReplica, request: web.BaseRequest) -> web.Response:
        resp = web.Response(text="ok", headers={"X-Conn-Only": "1", "X-Kept": "2"})
        resp.headers["Connection"] = "X-Conn-Only"
        resp.headers["Keep-Alive"] = "timeout=5"
        resp.headers["Trailer"] = "X-T"
        return resp

    replica = await h.replica(1, behaviour=hop_back)
    _, url = await h.router([replica.backend])
    answer = await exchange(
        url,
        b"GET / HTTP/1.1\r\nHost: svc\r\nConnection: close, X-Private\r\nX-Private: p\r\n"
        b"Keep-Alive: 300\r\nTE: trailers\r\nTrailer: X-T\r\nUpgrade: h2c\r\n"
        b"Proxy-Authorization: Basic x\r\nProxy-Connection: keep-alive\r\nX-Normal: n\r\n\r\n",
    )
    seen = replica.seen[0].headers
    for name in ("X-Private", "Keep-Alive", "TE", "Trailer", "Upgrade", "Proxy-Authorization"):
        assert name not in seen, name
    assert "Proxy-Connection" not in seen and seen["X-Normal"] == "n"
    head = answer.split(b"\r\n\r\n")[0].lower()
    assert status(answer) == 200 and b"x-kept: 2" in head
    for hop in (b"x-conn-only", b"keep-alive", b"trailer"):
        assert hop + b":" not in head, hop


# ---- slow clients ---------------------------------------------------------------------------


async def test_a_head_trickling_in_is_cut_with_408_however_active_the_client(
    h: Harness,
) -> None:
    replica = await h.replica(1)
    _, url = await h.router([replica.backend], section(client_header_timeout_seconds=0.2))
    loop = asyncio.get_running_loop()
    with socket.socket() as sock:  # plain socket calls: the answer stays readable after EPIPE
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port_of(url)))
        await loop.sock_sendall(sock, b"GET / HTTP/1.1\r\n")
        for _ in range(400):  # a slowloris: a header line every 20 ms, never the end
            try:
                await loop.sock_sendall(sock, b"X-A: 1\r\n")
            except ConnectionError:
                break
            await asyncio.sleep(0.02)
        answer = await asyncio.wait_for(loop.sock_recv(sock, 65536), 10)
    assert status(answer) == 408 and replica.hits == 0


@pytest.mark.parametrize("buffer", [1 << 20, 10], ids=["buffered", "streamed"])
async def test_a_body_that_stalls_gets_408_and_the_replica_is_not_blamed(
    h: Harness, buffer: int
) -> None:
    async def read_body(replica: FakeReplica, request: web.BaseRequest) -> web.Response:
        return web.Response(body=await request.read())

    replica = await h.replica(1, behaviour=read_body)
    sec = section(client_body_timeout_seconds=0.2, max_buffer_bytes=buffer)
    router, url = await h.router([replica.backend], sec)
    raw = await Raw.open(url)
    try:
        await raw.send(b"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 100\r\n\r\n" + b"x" * 40)
        answer = await raw.read_all()  # the rest never comes
    finally:
        await raw.close()
    assert status(answer) == 408
    assert replica.finished == 0 and h.backend_errors == []
    assert router.replica_stats()[1]["in_flight"] == 0


async def test_idle_keep_alive_connections_are_closed(h: Harness) -> None:
    replica = await h.replica(1)
    _, url = await h.router([replica.backend], section(client_keepalive_timeout_seconds=0.1))
    raw = await Raw.open(url)
    try:
        await raw.send(GET + b"\r\n")
        assert status(await raw.reader.readuntil(b"\r\n\r\n")) == 200
        await raw.reader.readexactly(9)  # "replica-1"
        assert await raw.read_all() == b""  # closed without a word
    finally:
        await raw.close()


# ---- slow replicas --------------------------------------------------------------------------


async def test_a_replica_too_slow_to_answer_gives_504_and_is_hung_up_on(h: Harness) -> None:
    async def never(replica: FakeReplica, request: web.BaseRequest) -> web.Response:
        await replica.gate.wait()
        return web.Response(text="late")

    replica = await h.replica(1, behaviour=never)
    router, url = await h.router([replica.backend], section(request_timeout_seconds=0.1))
    for _ in range(3):
        async with h.client.get(url + "/") as resp:
            assert resp.status == 504
    # each request the replica received is hung up on (on a loaded machine one may be
    # cancelled before it was delivered)
    seen = lambda: replica.hits >= 1 and replica.hung_up == replica.hits  # noqa: E731
    await eventually(seen, "the replica sees each hang-up")
    assert router.replica_stats()[1]["in_flight"] == 0


async def test_the_response_head_has_the_request_timeout_not_the_stream_timeout(
    h: Harness,
) -> None:
    """docs/spec.md: the head within request_timeout_seconds (300 by default), the
    stream timeout (120) only for silences inside the body."""

    async def thinks(replica: FakeReplica, request: web.BaseRequest) -> web.Response:
        await asyncio.sleep(0.5)
        return web.Response(text="answer")

    replica = await h.replica(1, behaviour=thinks)
    sec = replace(section(request_timeout_seconds=5.0), stream_timeout_seconds=0.2)
    _, url = await h.router([replica.backend], sec)
    async with h.client.get(url + "/") as resp:
        assert resp.status == 200 and await resp.text() == "answer"


async def test_a_replica_stalling_mid_body_is_cut_after_the_stream_timeout(h: Harness) -> None:
    async def stall(replica: FakeReplica, request: web.BaseRequest) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b"start")
        await replica.gate.wait()
        return resp

    replica = await h.replica(1, behaviour=stall)
    sec = section()

    router, url = await h.router([replica.backend], replace(sec, stream_timeout_seconds=0.2))
    answer = await exchange(url, GET + b"\r\n")
    assert status(answer) == 200 and answer.endswith(b"5\r\nstart\r\n")  # no last chunk
    await eventually(lambda: replica.hung_up == 1, "the replica is hung up on")
    assert router.replica_stats()[1]["in_flight"] == 0


# ---- many connections, slow readers ---------------------------------------------------------


async def test_connections_beyond_the_limit_get_503_until_one_closes(h: Harness) -> None:
    replica = await h.replica(1)
    router, url = await h.router([replica.backend], section(max_connections=3))
    held = [await Raw.open(url) for _ in range(3)]
    try:
        assert router._front is not None
        await eventually(lambda: len(router._front.connections) == 3, "three accepted")  # type: ignore[union-attr]
        extra = await Raw.open(url)
        try:
            answer = await extra.read_all()
        finally:
            await extra.close()
        assert status(answer) == 503 and b"too many connections" in answer
        await held.pop().close()
        await eventually(lambda: len(router._front.connections) == 2, "one left")  # type: ignore[union-attr]
        assert status(await exchange(url, GET + b"Connection: close\r\n\r\n")) == 200
        for raw in held:  # the held connections are still served
            await raw.send(GET + b"\r\n")
            assert status(await raw.reader.readuntil(b"\r\n\r\n")) == 200
    finally:
        for raw in held:
            await raw.close()


async def test_a_client_reading_slowly_holds_back_the_replica(h: Harness) -> None:
    total = 64 << 20
    written = [0]

    async def flood(replica: FakeReplica, request: web.BaseRequest) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = total
        await resp.prepare(request)
        block = b"z" * 65536
        for _ in range(total // len(block)):
            await resp.write(block)  # waits while the router does not read
            written[0] += len(block)
        await resp.write_eof()
        return resp

    replica = await h.replica(1, behaviour=flood)
    _, url = await h.router([replica.backend])
    raw = await Raw.open(url, rcvbuf=65536)
    try:
        await raw.send(GET + b"\r\n")
        last, still = -1, 0
        while still < 25:  # until the replica has made no progress for 25 looks
            await asyncio.sleep(0.02)
            still = still + 1 if written[0] == last else 0
            last = written[0]
        assert 0 < written[0] < total // 2  # socket buffers and one body buffer, not 64 MiB
        got = len(await raw.reader.readuntil(b"\r\n\r\n"))
        got = 0
        while got < total:
            chunk = await asyncio.wait_for(raw.reader.read(1 << 20), 10)
            assert chunk
            got += len(chunk)
        assert got == total and written[0] == total
    finally:
        await raw.close()


def test_every_hop_by_hop_name_is_dropped_both_ways_in_any_case() -> None:
    # the drop regexes spell _HOP's names out (factored by first letter): kept in step
    names = [
        alt.replace(b"[^:\r\n]*", b"Authenticate").replace(b"s?", b"")
        for alt in headers._HOP.split(b"|")
    ] + [b"trailers"]
    assert len(names) == 8
    for name in names:
        for spelt in (name, name.upper(), name.title()):
            section = b"\nA: 1\r\n" + spelt + b": x\r\nB: 2\r\n"
            assert headers._DROP_UPSTREAM(b"", section) == b"\nA: 1\r\nB: 2\r\n", spelt
            assert headers._DROP_DOWNSTREAM(b"", section) == b"\nA: 1\r\nB: 2\r\n", spelt
            kept = b"\n" + spelt + b"x: 1\r\n"  # a longer name is no hop-by-hop header
            if not spelt.lower().startswith(b"proxy-"):
                assert headers._DROP_UPSTREAM(b"", kept) == kept
                assert headers._DROP_DOWNSTREAM(b"", kept) == kept
