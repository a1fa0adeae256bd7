"""Requests told by callbacks: the client's Listener, the write batch, no task per request."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from skyctl.router.batch import WriteBatch
from skyctl.router.client import ConnectFailed, Disconnected, Pool, Response
from tests.helpers.waiting import eventually
from tests.test_router_client import (
    RawServer,
    Reader,
    Serve,
    Writer,
    _silent,
    get,
    half_then_wait,
    keep_answering,
    pool,
    read_request,
    servers,
)
from tests.test_router_helpers import refused_backend

__all__ = ["pool", "servers"]  # the fixtures, used by name


class Told:
    """A Listener that records what it was told."""

    def __init__(self) -> None:
        self.heads: list[Response] = []
        self.errors: list[BaseException] = []
        self.whole: list[bool] = []

    def on_head(self, resp: Response) -> None:
        self.heads.append(resp)
        self.whole.append(resp.body.complete)

    def on_error(self, resp: Response | None, exc: BaseException) -> None:
        self.errors.append(exc)


async def connect_and_send(pool: Pool, server: RawServer, told: Told, **kw: float) -> Response:
    conn = await pool.connect(server.origin)
    return conn.begin(b"GET", get(), None, kw.get("timeout"), False, told)


async def test_a_listener_is_told_once_at_the_head_with_the_body_that_came_along(
    servers: Callable[[Serve], Awaitable[RawServer]], pool: Pool
) -> None:
    server = await servers(keep_answering)
    told = Told()
    resp = await connect_and_send(pool, server, told)
    await eventually(lambda: bool(told.heads), "the head")
    await asyncio.sleep(0.05)
    assert told.heads == [resp] and told.whole == [True] and not told.errors
    assert resp.body.take() == b"hello"
    assert pool.idle_count(server.origin) == 1  # back in the pool: it arrived whole
    again = pool.begin(server.origin, b"GET", get(), None, None, False, told)
    assert again is not None  # sent at once on the pooled connection
    await eventually(lambda: len(told.heads) == 2, "the second head")


async def test_a_listener_sees_a_partial_body_and_reads_the_rest(
    servers: Callable[[Serve], Awaitable[RawServer]], pool: Pool
) -> None:
    server = await servers(half_then_wait)
    told = Told()
    resp = await connect_and_send(pool, server, told)
    await eventually(lambda: bool(told.heads), "the head")
    assert told.whole == [False]
    assert await resp.body.read() == b"first"
    resp.release()  # half-read: the connection closes, the replica sees it
    await eventually(lambda: server.closed == 1, "the replica sees the disconnect")


async def test_a_connection_closed_before_the_head_is_told_as_an_error(
    servers: Callable[[Serve], Awaitable[RawServer]], pool: Pool
) -> None:
    async def hang_up(s: RawServer, reader: Reader, writer: Writer) -> None:
        await read_request(reader)

    server = await servers(hang_up)
    told = Told()
    await connect_and_send(pool, server, told)
    await eventually(lambda: bool(told.errors), "the error")
    await asyncio.sleep(0.05)
    assert len(told.errors) == 1 and isinstance(told.errors[0], Disconnected)
    assert not told.heads


async def test_no_head_in_time_tells_the_listener_a_timeout_once_and_closes(
    servers: Callable[[Serve], Awaitable[RawServer]], pool: Pool
) -> None:
    server = await servers(lambda s, r, w: _silent(s, r))
    told = Told()
    await connect_and_send(pool, server, told, timeout=0.05)
    await eventually(lambda: bool(told.errors), "the timeout")
    await eventually(lambda: server.closed == 1, "the connection is closed")
    assert len(told.errors) == 1 and isinstance(told.errors[0], TimeoutError)
    assert len(pool.deadlines) == 0


async def test_a_released_request_tells_its_listener_nothing(
    servers: Callable[[Serve], Awaitable[RawServer]], pool: Pool
) -> None:
    async def note_then_wait(s: RawServer, reader: Reader, writer: Writer) -> None:
        await read_request(reader)
        s.requests += 1
        if not await reader.read(1):
            s.closed += 1

    server = await servers(note_then_wait)
    told = Told()
    resp = await connect_and_send(pool, server, told)
    await eventually(lambda: server.requests == 1, "the request reaches the replica")
    resp.release()  # cancelled: the connection closes
    await eventually(lambda: server.closed == 1, "the replica sees the disconnect")
    assert not told.heads and not told.errors and len(pool.deadlines) == 0


async def test_a_refused_connection_cannot_be_opened(pool: Pool) -> None:
    from skyctl.router.client import Origin

    try:
        await pool.connect(Origin.parse(refused_backend(1).url))
    except ConnectFailed:
        return
    raise AssertionError("connected to a closed port")


async def test_writes_of_one_iteration_go_out_together_in_order() -> None:
    loop = asyncio.get_running_loop()
    batch = WriteBatch(loop)
    made: list[bytes] = []
    batch.write(made.append, b"a")
    batch.write(made.append, b"b")
    assert made == [] and len(batch) == 2  # nothing before the iteration ends
    await asyncio.sleep(0)
    assert made == [b"a", b"b"] and len(batch) == 0
    batch.write(made.append, b"c")
    batch.flush()  # a closing connection flushes first
    assert made == [b"a", b"b", b"c"]
    await asyncio.sleep(0)
    assert made == [b"a", b"b", b"c"]  # the scheduled flush finds nothing left


async def test_end_of_iteration_callbacks_run_before_the_writes_and_join_their_burst(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    batch = WriteBatch(loop)
    made: list[bytes] = []

    def decide() -> None:  # as a fan-out race is decided: it answers in the same burst
        batch.write(made.append, b"answer")

    def broken() -> None:
        raise RuntimeError("a bug")

    batch.write(made.append, b"request")
    batch.soon(broken)
    batch.soon(decide)
    batch.flush()  # a closing connection's flush makes the writes only
    assert made == [b"request"]
    await asyncio.sleep(0)
    assert made == [b"request", b"answer"]  # in this iteration, despite the failed one
    assert "end-of-iteration callback failed" in caplog.text
    batch.soon(decide)  # a callback alone schedules the end of the iteration too
    await asyncio.sleep(0)
    assert made == [b"request", b"answer", b"answer"]


def test_the_router_serves_on_uvloop_the_loop_the_controller_runs() -> None:
    """The controller runs on uvloop, whose objects are not always the types the
    stubs name (its Server.sockets is a list): the router must serve there too,
    plain or compiled (tests/test_compiled_router.py runs this file compiled)."""
    import uvloop

    from skyctl.clock import SystemClock
    from skyctl.router import Router
    from skyctl.spec import ServiceSection
    from skyctl.types import Backend, Location

    async def replica(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        await writer.drain()
        writer.close()

    async def main() -> tuple[bytes, int, int]:
        backend = await asyncio.start_server(replica, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{backend.sockets[0].getsockname()[1]}"
        router = Router("svc", ServiceSection(), clock=SystemClock())
        router.set_backends([Backend(1, url, Location("local", "r", "z"))])
        port = await router.start("127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            return answer, port, router.port
        finally:
            await router.stop(grace_seconds=1.0)
            backend.close()
            await backend.wait_closed()

    answer, bound, reported = uvloop.run(main())
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\nhi")
    assert bound == reported > 0
