"""Three protocol gaps of the router's wire layer, each against a running router.

- interim (1xx) responses from a replica reach an HTTP/1.1 client before the
  final response, from the one replica a request is committed to; never an
  HTTP/1.0 client, never from racing copies (RFC 9110 section 15.2);
- ``Upgrade`` in an HTTP/1.0 request is ignored (RFC 9110 section 7.8): the
  request goes to the replica as a plain one, no tunnel;
- a replica's response head over 64 KiB is refused (502) however it arrives,
  in one read or several.

The fourth, the lingering close, is in ``tests/test_router_wire_linger.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from skyctl.types import Backend, Location
from tests.helpers.waiting import eventually
from tests.test_router_helpers import Harness, open_harness, section
from tests.test_router_hostile import Raw, status

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]


class RawReplica:
    """A replica speaking raw bytes: reads each request head (and its Content-Length
    body), then runs ``script``; records every head and body it read."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                length = 0
                for line in head.lower().split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length) if length else b""
                self.bodies.append(body)
                await self.script(reader, writer, head)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def backend(self, replica_id: int, zone: str = "z1") -> Backend:
        return Backend(replica_id, f"http://127.0.0.1:{self.port}", Location("local", "r1", zone))


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with open_harness() as harness:
        yield harness


@pytest.fixture
async def raw_replicas() -> AsyncIterator[list[RawReplica]]:
    made: list[RawReplica] = []
    yield made
    for replica in made:
        await replica.stop()


async def raw_replica(made: list[RawReplica], script: Script) -> RawReplica:
    replica = RawReplica(script)
    await replica.start()
    made.append(replica)
    return replica


EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def just_ok(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> None:
    writer.write(OK)
    await writer.drain()


async def hints_then_ok(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> None:
    writer.write(EARLY_HINTS)
    await writer.drain()
    await asyncio.sleep(0.05)  # the hint goes out on its own, before the answer
    writer.write(OK)
    await writer.drain()


async def read_response(raw: Raw) -> tuple[list[bytes], bytes]:
    """The heads (interim ones first) of one response and its body (Content-Length)."""
    heads = []
    while True:
        head = await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), 10)
        heads.append(head)
        if status(head) >= 200:
            break
    length = 0
    for line in heads[-1].lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    body = await asyncio.wait_for(raw.reader.readexactly(length), 10)
    return heads, body


# ---- 1. interim responses ------------------------------------------------------------------


async def test_an_early_hints_response_reaches_an_http11_client_before_the_answer(
    h: Harness, raw_replicas: list[RawReplica]
) -> None:
    replica = await raw_replica(raw_replicas, hints_then_ok)
    router, url = await h.router([replica.backend(1)])
    raw = await Raw.open(url)
    try:
        for _ in range(2):  # and the connection goes on after it
            await raw.send(b"GET / HTTP/1.1\r\nHost: svc\r\n\r\n")
            heads, body = await read_response(raw)
            assert [status(x) for x in heads] == [103, 200] and body == b"ok"
            assert b"link: </style.css>; rel=preload\r\n" in heads[0].lower()
    finally:
        await raw.close()
    stats = router.replica_stats()[1]
    assert stats["requests"] == 2 and stats["errors"] == 0


async def test_an_http10_client_gets_no_interim_response(
    h: Harness, raw_replicas: list[RawReplica]
) -> None:
    replica = await raw_replica(raw_replicas, hints_then_ok)
    _, url = await h.router([replica.backend(1)])
    raw = await Raw.open(url)
    try:
        await raw.send(b"GET / HTTP/1.0\r\nHost: svc\r\n\r\n")
        answer = await raw.read_all()
    finally:
        await raw.close()
    assert status(answer) == 200 and b"103" not in answer and answer.endswith(b"\r\n\r\nok")


async def test_a_replicas_100_continue_is_passed_on_once(
    h: Harness, raw_replicas: list[RawReplica]
) -> None:
    async def continue_then_ok(
        _: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes
    ) -> None:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)
        await writer.drain()

    replica = await raw_replica(raw_replicas, continue_then_ok)
    _, url = await h.router([replica.backend(1)])
    raw = await Raw.open(url)
    try:
        await raw.send(b"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\n\r\nhello")
        heads, body = await read_response(raw)
        # the client asked for no 100: the replica's is passed on (a proxy forwards 1xx)
        assert [status(x) for x in heads] == [100, 200] and body == b"ok"
    finally:
        await raw.close()


@pytest.mark.parametrize("policy", ["fan_out", "hedge"])
async def test_racing_copies_send_no_interim_response_and_the_final_one_wins(
    h: Harness, raw_replicas: list[RawReplica], policy: str
) -> None:
    replicas = [await raw_replica(raw_replicas, hints_then_ok) for _ in range(2)]
    sec = section(policy, hedge_delay_seconds=0.0)
    _, url = await h.router([r.backend(i + 1, f"z{i}") for i, r in enumerate(replicas)], sec)
    raw = await Raw.open(url)
    try:
        await raw.send(b"GET / HTTP/1.1\r\nHost: svc\r\n\r\n")
        heads, body = await read_response(raw)
    finally:
        await raw.close()
    assert [status(x) for x in heads] == [200] and body == b"ok"


async def test_an_interim_response_does_not_count_as_the_replicas_answer(
    h: Harness, raw_replicas: list[RawReplica]
) -> None:
    """A replica that sends 103 and then hangs still times out (504), and is counted so."""

    async def hints_then_hang(
        _: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes
    ) -> None:
        writer.write(EARLY_HINTS)
        await writer.drain()
        await asyncio.sleep(30)

    replica = await raw_replica(raw_replicas, hints_then_hang)
    router, url = await h.router([replica.backend(1)], section(request_timeout_seconds=0.3))
    raw = await Raw.open(url)
    try:
        await raw.send(b"GET / HTTP/1.1\r\nHost: svc\r\n\r\n")
        heads, _ = await read_response(raw)
    finally:
        await raw.close()
    assert [status(x) for x in heads] == [103, 504]
    assert router.replica_stats()[1]["errors"] == 1


async def test_a_flood_of_interim_responses_is_refused(
    h: Harness, raw_replicas: list[RawReplica]
) -> None:
    async def endless_hints(
        _: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes
    ) -> None:
        for _ in range(2000):  # 2000 x 60 bytes: past the 64 KiB of interim heads allowed
            writer.write(EARLY_HINTS)
            await writer.drain()
        writer.write(OK)
        await writer.drain()

    replica = await raw_replica(raw_replicas, endless_hints)
    router, url = await h.router([replica.backend(1)], section(retries=0))
    raw = await Raw.open(url)
    try:
        await raw.send(b"GET / HTTP/1.1\r\nHost: svc\r\n\r\n")
        heads, _ = await read_response(raw)
    finally:
        await raw.close()
    assert status(heads[-1]) == 502 and len(heads) < 1200
    assert router.replica_stats()[1]["errors"] == 1


# ---- 2. Upgrade in HTTP/1.0 -----------------------------------------------------------------


async def test_upgrade_in_an_http10_request_is_ignored_and_the_request_forwarded_plain(
    h: Harness, raw_replicas: list[RawReplica]
) -> None:
    replica = await raw_replica(raw_replicas, just_ok)
    _, url = await h.router([replica.backend(1)])
    answer = await _exchange(
        url,
        b"POST /ws HTTP/1.0\r\nHost: svc\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
        b"Content-Length: 5\r\n\r\nhello",
    )
    assert status(answer) == 200 and answer.endswith(b"\r\n\r\nok")
    assert len(replica.heads) == 1 and replica.bodies == [b"hello"]
    seen = replica.heads[0].lower()
    assert b"upgrade" not in seen  # neither the header nor a Connection token


async def test_upgrade_in_an_http10_request_with_keep_alive_closes_after_its_answer(
    h: Harness, raw_replicas: list[RawReplica]
) -> None:
    """What follows it is never read as requests (llhttp-based proxies in front would
    take those bytes for the new protocol's)."""

    replica = await raw_replica(raw_replicas, just_ok)
    _, url = await h.router([replica.backend(1)])
    answer = await _exchange(
        url,
        b"GET /ws HTTP/1.0\r\nHost: svc\r\nConnection: keep-alive, upgrade\r\n"
        b"Upgrade: websocket\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: svc\r\n\r\n",
    )
    assert status(answer) == 200 and b"connection: close" in answer.lower()
    assert [x.split(b" ")[1] for x in replica.heads] == [b"/ws"]
    assert b"upgrade" not in replica.heads[0].lower()


async def _exchange(url: str, data: bytes) -> bytes:
    raw = await Raw.open(url)
    try:
        await raw.send(data)
        return await raw.read_all()
    finally:
        await raw.close()


# ---- 3. a response head over the limit -------------------------------------------------------


@pytest.mark.parametrize("writes", [1, 3])
async def test_a_response_head_over_64_kib_is_refused_however_it_arrives(
    h: Harness, raw_replicas: list[RawReplica], writes: int
) -> None:
    head = b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"a" * (70 * 1024) + b"\r\nContent-Length: 2\r\n"
    whole = head + b"\r\nok"
    step = len(whole) // writes + 1

    async def big_head(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> None:
        for i in range(0, len(whole), step):
            writer.write(whole[i : i + step])
            await writer.drain()
            await asyncio.sleep(0.02)

    replica = await raw_replica(raw_replicas, big_head)
    router, url = await h.router([replica.backend(1)], section(retries=0))
    answer = await _exchange(url, b"GET / HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n")
    assert status(answer) == 502
    assert router.replica_stats()[1]["errors"] == 1
    await eventually(lambda: h.backend_errors == [1], "the replica reported")


async def test_an_upgrade_answered_with_a_head_over_64_kib_is_refused(
    h: Harness, raw_replicas: list[RawReplica]
) -> None:
    switch = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"

    async def big_switch(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> None:
        writer.write(switch + b"X-Big: " + b"a" * (70 * 1024) + b"\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(30)

    replica = await raw_replica(raw_replicas, big_switch)
    router, url = await h.router([replica.backend(1)])
    answer = await _exchange(
        url,
        b"GET /ws HTTP/1.1\r\nHost: svc\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    assert status(answer) == 502
    assert router.replica_stats()[1]["errors"] == 1


async def test_a_response_head_just_under_the_limit_is_passed_on(
    h: Harness, raw_replicas: list[RawReplica]
) -> None:
    head = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (60 * 1024) + b"\r\nContent-Length: 2\r\n\r\nok"

    async def big_head(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> None:
        writer.write(head)
        await writer.drain()

    replica = await raw_replica(raw_replicas, big_head)
    _, url = await h.router([replica.backend(1)])
    answer = await _exchange(url, b"GET / HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n")
    assert status(answer) == 200 and answer.endswith(b"\r\n\r\nok")
