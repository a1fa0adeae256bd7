"""The router's own HTTP/1.1 client: pooling, streaming, reuse rules, errors, timeouts."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from skyctl.router.client import (
    BadResponse,
    ConnectFailed,
    Disconnected,
    HeadFuture,
    NotSent,
    Origin,
    Pool,
    Response,
)
from tests.helpers.waiting import eventually
from tests.test_router_helpers import refused_backend

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter
Serve = Callable[["RawServer", Reader, Writer], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


class RawServer:
    """A replica written against raw streams, to control every byte and every close."""

    def __init__(self, serve: Serve) -> None:
        self.serve = serve
        self.connections = 0
        self.closed = 0  # connections the client closed (EOF or reset seen)
        self.requests = 0
        self.gate = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._run, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _run(self, reader: Reader, writer: Writer) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.serve(self, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def stop(self) -> None:
        self.gate.set()
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await self._server.wait_closed()

    @property
    def origin(self) -> Origin:
        return Origin.parse(f"http://127.0.0.1:{self.port}")


def get(path: str = "/", method: bytes = b"GET") -> bytes:
    return method + b" " + path.encode() + b" HTTP/1.1\r\nHost: replica\r\n\r\n"


async def keep_answering(server: RawServer, reader: Reader, writer: Writer) -> None:
    """Answers every request on the connection with a 5-byte body."""
    while True:
        await read_request(reader)
        server.requests += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        await writer.drain()


async def half_then_wait(server: RawServer, reader: Reader, writer: Writer) -> None:
    """Sends 5 of 10 body bytes, then waits; notes when the client goes away."""
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nfirst")
    await writer.drain()
    if not await reader.read(1):
        server.closed += 1


@pytest.fixture
async def servers() -> AsyncIterator[Callable[[Serve], Awaitable[RawServer]]]:
    started: list[RawServer] = []

    async def make(serve: Serve) -> RawServer:
        server = RawServer(serve)
        await server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        await server.stop()


@pytest.fixture
async def pool() -> AsyncIterator[Pool]:
    pool = Pool(connect_timeout=2.0, read_timeout=5.0)
    yield pool
    await pool.close()


async def read_all(resp: Response) -> bytes:
    parts = []
    while chunk := await resp.body.read():
        parts.append(chunk)
    return b"".join(parts)


# ---- reuse -----------------------------------------------------------------------------


async def test_a_fully_read_response_returns_its_connection_to_the_pool(
    servers: Callable[[Serve], Awaitable[RawServer]], pool: Pool
) -> None:
    server = await servers(keep_answering)
    for _ in range(4):
        resp = await pool.request(server.origin, b"GET", get())
        assert (resp.status, await read_all(resp)) == (200, b"hello")
        resp.release()
    assert server.requests == 4
    assert server.connections == pool.connects == 1


async def test_a_response_that_arrived_whole_frees_its_connection_before_it_is_read(
    servers: Callable[[Serve], Awaitable[RawServer]], pool: Pool
) -> None:
    server = await servers(keep_answering)
    resp = await pool.request(server.origin, b"GET", get())
    await eventually(lambda: pool.idle_count(server.origin) == 1, "connection back in the pool")
    assert resp.body.complete and await read_all(resp) == b"hello"
    resp.release()  # no effect on the pooled connection
    again = await pool.request(server.origin, b"GET", get())
    assert await read_all(again) == b"hello"
    assert server.connections == 1


async def test_a_half_read_response_closes_its_connection(
    servers: Callable[[Serve], Awaitable[RawServer]], pool: Pool
) -> None:
    server = await servers(half_then_wait)
    resp = await pool.request(server.origin, b"GET", get())
    assert await resp.body.read() == b"first"
    resp.release()
    await eventually(lambda: server.closed == 1, "the replica sees the disconnect")
    assert pool.idle_count() == 0
    await pool.request(server.origin, b"GET", get())
    assert pool.connects == server.connections == 2


async def test_a_cancelled_request_closes_its_connection(
    servers: Callable[[Serve], Awaitable[RawServer]], pool: Pool
) -> None:
    async def never_answer(s: RawServer, reader: Reader, writer: Writer) -> None:
        await read_request(reader)
        if not await reader.read(1):
            s.closed += 1

    server = await servers(never_answer)
    waiting = asyncio.ensure_future(pool.request(server.origin, b"GET", get()))
    await eventually(lambda: server.connections == 1, "request sent")
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await eventually(lambda: server.closed == 1, "the replica sees the cancellation")
    assert pool.idle_count() == 0


async def test_connections_are_reused_correctly_under_concurrency(
    servers: Callable[[Serve], Awaitable[RawServer]], pool: Pool
) -> None:
    # a connection goes back to the pool before the task that used it resumes; the next
    # request may take it at once and must not be disturbed by that task (a past bug)
    server = await servers(keep_answering)

    async def one() -> bytes:
        resp = await pool.request(server.origin, b"GET", get())
        try:
            return await read_all(resp)
        finally:
            resp.release()

    for _ in range(5):
        bodies = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(20))), 10)
        assert bodies == [b"hello"] * 20
    assert server.requests == 100
    assert pool.connects <= 20


async def test_idle_connections_close_after_the_keepalive(
    servers: Callable[[Serve], Awaitable[RawServer]],
) -> None:
    server = await servers(keep_answering)
    pool = Pool(connect_timeout=2.0, read_timeout=5.0, keepalive=0.02)
    try:
        resp = await pool.request(server.origin, b"GET", get())
        await read_all(resp)
        await eventually(lambda: pool.idle_count() == 0, "idle connection dropped")
    finally:
        await pool.close()


# ---- streaming and framing ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "pieces", "body"),
    [
        (b"Content-Length: 11\r\n", [b"hello", b" world"], b"hello world"),
        (
            b"Transfer-Encoding: chunked\r\n",
            [b"5;ext=1\r\nhello\r\n", b"6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"],
            b"hello world",
        ),
    ],
    ids=["content-length", "chunked"],
)
async def test_bodies_stream_as_they_arrive(
    servers: Callable[[Serve], Awaitable[RawServer]],
    pool: Pool,
    head: bytes,
    pieces: list[bytes],
    body: bytes,
) -> None:
    async def in_two_steps(s: RawServer, reader: Reader, writer: Writer) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n" + head + b"\r\n" + pieces[0])
        await writer.drain()
        await s.gate.wait()
        writer.write(pieces[1])
        await writer.drain()
        await read_request(reader)  # the connection stays usable

    server = await servers(in_two_steps)
    resp = await pool.request(server.origin, b"GET", get())
    first = await resp.body.read()
    assert first and body.startswith(first) and first != body  # before the rest was sent
    server.gate.set()
    assert first + await read_all(resp) == body
    await eventually(lambda: pool.idle_count() == 1, "reusable after the whole body")


@pytest.mark.parametrize(
    ("method", "status", "extra"),
    [(b"HEAD", 200, b"Content-Length: 99\r\n"), (b"GET", 204, b""), (b"GET", 304, b"")],
)
async def test_responses_without_a_body_end_at_their_head(
    servers: Callable[[Serve], Awaitable[RawServer]],
    pool: Pool,
    method: bytes,
    status: int,
    extra: bytes,
) -> None:
    async def no_body(s: RawServer, reader: Reader, writer: Writer) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 %d X\r\n%b\r\n" % (status, extra))
            await writer.drain()

    server = await servers(no_body)
    for _ in range(2):
        resp = await pool.request(server.origin, method, get(method=method))
        assert resp.status == status and await read_all(resp) == b""
    assert server.connections == 1


async def test_informational_responses_are_skipped(
    servers: Callable[[Serve], Awaitable[RawServer]], pool: Pool
) -> None:
    async def early_hints(s: RawServer, reader: Reader, writer: Writer) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read(1)

    server = await servers(early_hints)
    resp = await pool.request(server.origin, b"GET", get())
    assert (resp.status, await read_all(resp)) == (200, b"ok")


async def test_a_body_delimited_by_close_ends_at_eof_and_is_not_reused(
    servers: Callable[[Serve], Awaitable[RawServer]], pool: Pool
) -> None:
    async def until_close(s: RawServer, reader: Reader, writer: Writer) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nall of it")
        await writer.drain()

    server = await servers(until_close)
    resp = await pool.request(server.origin, b"GET", get())
    assert await read_all(resp) == b"all of it"
    assert pool.idle_count() == 0


# ---- errors and timeouts -------------------------------------------------------------------


async def test_a_reset_mid_stream_fails_the_body_read(
    servers: Callable[[Serve], Awaitable[RawServer]], pool: Pool
) -> None:
    async def reset(s: RawServer, reader: Reader, writer: Writer) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\npart")
        await writer.drain()
        writer.transport.abort()

    server = await servers(reset)
    resp = await pool.request(server.origin, b"GET", get())
    with pytest.raises(Disconnected):
        await read_all(resp)
    assert pool.idle_count() == 0


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (None, Disconnected),  # closed before any response
        (b"SPDY/3 200 OK\r\n\r\n", BadResponse),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            BadResponse,
        ),
        (b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n", BadResponse),
    ],
    ids=["closed", "not-http", "smuggling", "bad-header"],
)
async def test_failures_before_the_head_are_typed(
    servers: Callable[[Serve], Awaitable[RawServer]],
    pool: Pool,
    answer: bytes | None,
    error: type[Exception],
) -> None:
    async def misbehave(s: RawServer, reader: Reader, writer: Writer) -> None:
        await read_request(reader)
        if answer is not None:
            writer.write(answer)
            await writer.drain()
            await reader.read(1)

    server = await servers(misbehave)
    with pytest.raises(error):
        await pool.request(server.origin, b"GET", get())


async def test_a_refused_connection_is_a_connect_failure(pool: Pool) -> None:
    origin = Origin.parse(refused_backend(1).url)
    with pytest.raises(ConnectFailed):
        await pool.request(origin, b"GET", get())


async def test_no_head_within_the_wait_times_out_and_closes(
    servers: Callable[[Serve], Awaitable[RawServer]], pool: Pool
) -> None:
    server = await servers(half_then_wait)
    server.serve = lambda s, r, w: _silent(s, r)
    with pytest.raises(TimeoutError):
        await pool.request(server.origin, b"GET", get(), head_timeout=0.05)
    await eventually(lambda: server.closed == 1, "the connection is closed")


async def _silent(server: RawServer, reader: asyncio.StreamReader) -> None:
    await read_request(reader)
    if not await reader.read(1):
        server.closed += 1


async def test_silence_while_reading_the_body_times_out(
    servers: Callable[[Serve], Awaitable[RawServer]],
) -> None:
    server = await servers(half_then_wait)
    pool = Pool(connect_timeout=2.0, read_timeout=0.05)
    try:
        resp = await pool.request(server.origin, b"GET", get())
        assert await resp.body.read() == b"first"
        with pytest.raises(TimeoutError):
            await resp.body.read()
        resp.release()
        await eventually(lambda: server.closed == 1, "the connection is closed")
    finally:
        await pool.close()


@pytest.mark.parametrize("url", ["ftp://host/", "http://", "host:80"])
def test_replica_urls_must_be_http(url: str) -> None:
    with pytest.raises(ValueError, match="replica url must be http"):
        Origin.parse(url)


# ---- was the request sent? ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("close", "unsent"),
    [
        ("reset", True),  # the kernel refuses the write: no byte left us
        ("fin", False),  # the kernel takes the bytes: the replica may have read them
    ],
)
async def test_a_pooled_connection_closed_under_a_request_says_whether_any_byte_went_out(
    pool: Pool, close: str, unsent: bool
) -> None:
    loop = asyncio.get_running_loop()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        origin = Origin.parse(f"http://127.0.0.1:{listener.getsockname()[1]}")
        first = asyncio.ensure_future(pool.request(origin, b"GET", get()))
        peer, _ = await loop.sock_accept(listener)
        with peer:
            await loop.sock_recv(peer, 4096)
            await loop.sock_sendall(peer, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            assert await read_all(await first) == b"ok"
            assert pool.idle_count(origin) == 1
            if close == "reset":
                peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # closed synchronously: the pool has not seen it yet and reuses the connection
        arrival = HeadFuture()
        resp = pool.begin(origin, b"POST", get(method=b"POST"), None, None, False, arrival)
        assert resp is not None
        with pytest.raises(Disconnected) as failed:
            await arrival.future
        resp.release()
    assert failed.value.unsent is unsent
    assert isinstance(failed.value, NotSent) is unsent


async def test_a_refused_connection_never_sent_a_byte(pool: Pool) -> None:
    origin = Origin.parse(refused_backend(1).url)
    with pytest.raises(ConnectFailed) as failed:
        await pool.request(origin, b"POST", get(method=b"POST"))
    assert failed.value.unsent


async def test_a_request_head_still_in_the_write_batch_when_its_connection_breaks_was_not_sent(
    servers: Callable[[Serve], Awaitable[RawServer]], pool: Pool
) -> None:
    """Heads go out at the end of the loop iteration: a connection lost before then
    took no byte, so even a POST may go to another replica."""
    server = await servers(keep_answering)
    await read_all(await pool.request(server.origin, b"GET", get()))
    await eventually(lambda: pool.idle_count(server.origin) == 1, "a pooled connection")
    arrival = HeadFuture()
    resp = pool.begin(server.origin, b"POST", get(method=b"POST"), None, None, False, arrival)
    assert resp is not None and len(pool.batch) == 1  # not written yet
    conn = resp._conn
    assert conn is not None and conn.transport is not None
    conn.transport.abort()  # broken before the batch is flushed
    with pytest.raises(NotSent) as failed:
        await arrival.future
    assert failed.value.unsent
    assert server.requests == 1  # the replica saw the GET only
