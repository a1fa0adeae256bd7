"""HTTP/1.1 parsing, body framing and the router's front server."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from skyctl.router.front import Connection, Request
from skyctl.router.http1 import (
    BodyStream,
    Framer,
    Head,
    ProtocolError,
    parse_request_head,
    parse_response_head,
)
from skyctl.router.listener import FrontServer
from tests.helpers.waiting import eventually

# ---- parsing -------------------------------------------------------------------------------


def test_a_request_head_is_parsed_with_the_values_the_router_needs() -> None:
    head = parse_request_head(
        b"POST /v1/completions?x=1 HTTP/1.1\r\nHost: svc:8000\r\nContent-Length: 12\r\n"
        b"X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\nX-Request-Id: abc\r\n"
        b"Connection: keep-alive, X-Hop\r\nExpect: 100-continue"
    )
    assert (head.method, head.target, head.http11) == (b"POST", b"/v1/completions?x=1", True)
    assert (head.host, head.request_id, head.content_length) == (b"svc:8000", b"abc", 12)
    assert head.forwarded_for == (b"10.0.0.1", b"10.0.0.2")
    assert head.connection == {b"keep-alive", b"x-hop"} and head.keep_alive
    assert head.expect_continue and not head.chunked


@pytest.mark.parametrize(
    ("head", "keep_alive"),
    [
        (b"GET / HTTP/1.1\r\nHost: h", True),
        (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close", False),
        (b"GET / HTTP/1.0", False),
        (b"GET / HTTP/1.0\r\nConnection: Keep-Alive", True),
    ],
)
def test_keep_alive_follows_the_version_and_connection(head: bytes, keep_alive: bool) -> None:
    assert parse_request_head(head).keep_alive is keep_alive


def test_header_names_and_connection_values_are_read_in_any_case() -> None:
    head = parse_response_head(
        b"HTTP/1.1 200 OK\r\nCONTENT-LENGTH: 12\r\nCONNECTION: CLOSE\r\nx-ReQuest-iD: a"
    )
    assert head.content_length == 12 and head.connection == {b"close"}
    assert head.keep_alive is False
    head = parse_request_head(b"POST / HTTP/1.0\r\nX-REQUEST-ID: AbC\r\nConnection: KEEP-ALIVE")
    assert head.request_id == b"AbC" and head.keep_alive is True
    chunked = parse_response_head(b"HTTP/1.1 200 OK\r\ntransfer-ENCODING: Chunked")
    assert chunked.chunked and chunked.content_length is None


def test_header_values_lose_the_whitespace_around_them_only() -> None:
    head = parse_request_head(
        b"GET / HTTP/1.1\r\nX-Request-Id: \t a b \t\r\nHost:h\r\nContent-Length:  \t7 "
    )
    assert (head.request_id, head.host, head.content_length) == (b"a b", b"h", 7)
    assert parse_request_head(b"GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: \t ").request_id == b""


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: -3", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: 0x10", 400),
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip", 400),  # chunked must be last
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip", 400),
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked", 501),  # unknown coding
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked", 400),
        (b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3", 400),  # duplicate
        (b"GET / HTTP/1.1\r\nContent-Length: 3, 3", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: 1234567890123456789", 400),  # 19 digits
        (b"GET / HTTP/1.1\r\nContent-Length: ", 400),
        (b"GET / HTTP/1.1\r\nCONTENT-LENGTH: 3\r\ncontent-length: 3", 400),
        (b"GET / HTTP/1.1" + b"\r\nX-A: 1" * 101, 431),  # too many header lines
        (b"GET / HTTP/1.1\r\nHost : a", 400),  # whitespace before the colon
        (b"GET / HTTP/1.1\r\nX-A: 1\r\n folded", 400),  # obsolete line folding
        (b"GET / HTTP/1.1\r\nX-A: 1\nX-B: 2", 400),  # bare LF
        (b"GET / HTTP/1.1\r\nX-A: a\x00b", 400),
        (b"GET / HTTP/1.1\r\nNoColon", 400),
        (b"GET /  HTTP/1.1", 400),
        (b"GET ftp://other/ HTTP/1.1", 400),  # absolute-form: http(s) only
        (b"GET / HTTP/2.0", 505),
        (b"GET / FTP/1.0", 400),
    ],
)
def test_ambiguous_or_malformed_requests_are_rejected(head: bytes, status: int) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_request_head(head)
    assert caught.value.status == status


def test_a_response_head_is_parsed() -> None:
    head = parse_response_head(
        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 3"
    )
    assert (head.status, head.reason, head.content_length) == (404, b"Not Found", 3)
    with pytest.raises(ProtocolError):
        parse_response_head(b"HTTP/1.1 2000 OK")


CHUNKED = b"5;name=v\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: x\r\n\r\nNEXT"


@pytest.mark.parametrize("step", [1, 2, 7, len(CHUNKED)])
def test_chunked_bodies_decode_whatever_the_packet_boundaries(step: int) -> None:
    framer = Framer(None, chunked=True)
    body = BodyStream()
    after = b""
    for i in range(0, len(CHUNKED), step):
        if framer.done:
            after += CHUNKED[i : i + step]
            continue
        rest = framer.feed(CHUNKED[i : i + step], body)
        assert (rest is None) is not framer.done
        after += rest or b""
    assert after == b"NEXT" and body.take() == b"hello world"


@pytest.mark.parametrize("bad", [b"zz\r\n", b"5\r\nhelloXX", b"1" * 5000])
def test_malformed_chunked_bodies_are_rejected(bad: bytes) -> None:
    with pytest.raises(ProtocolError):
        Framer(None, chunked=True).feed(bad, BodyStream())


def test_a_content_length_body_ends_at_its_length() -> None:
    framer, body = Framer(5, chunked=False), BodyStream()
    assert framer.feed(b"abc", body) is None
    assert framer.feed(b"deGET /", body) == b"GET /"
    assert body.take() == b"abcde"


# ---- the front server ------------------------------------------------------------------------

Handler = Callable[[Request, Connection], Awaitable[None]]


async def echo(request: Request, out: Connection) -> None:
    body = await request.body.read_all() if request.body is not None else b""
    out.send(200, b"OK", b"X-Path: %b\r\n" % request.target, body)


@pytest.fixture
async def front() -> AsyncIterator[Callable[[Handler], Awaitable[int]]]:
    servers: list[FrontServer] = []

    async def start(handler: Handler) -> int:
        server = FrontServer(handler)
        servers.append(server)
        return await server.start("127.0.0.1", 0)

    yield start
    for server in servers:
        await server.close()


async def talk(port: int, data: bytes, until: bytes | None = None) -> bytes:
    """Send ``data``; read until ``until`` appears, or until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        got = b""
        while until is None or got.count(until) == 0:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            if not chunk:
                break
            got += chunk
        return got
    finally:
        writer.close()


async def test_pipelined_requests_are_answered_in_order_on_one_connection(
    front: Callable[[Handler], Awaitable[int]],
) -> None:
    port = await front(echo)
    got = await talk(
        port,
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        b"\r\nabcGET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert got.count(b"HTTP/1.1 200 OK") == 3
    assert got.index(b"X-Path: /a") < got.index(b"X-Path: /b") < got.index(b"X-Path: /c")
    assert b"Content-Length: 3\r\nConnection: close\r\n\r\n" not in got.split(b"X-Path: /b")[0]
    assert got.endswith(b"Content-Length: 0\r\nConnection: close\r\n\r\n")


async def test_an_http_1_0_client_gets_its_answer_and_the_connection_closes(
    front: Callable[[Handler], Awaitable[int]],
) -> None:
    port = await front(echo)
    got = await talk(port, b"GET /old HTTP/1.0\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in got


async def test_a_chunked_request_body_reaches_the_handler_decoded(
    front: Callable[[Handler], Awaitable[int]],
) -> None:
    port = await front(echo)
    got = await talk(
        port,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    )
    assert got.endswith(b"\r\n\r\nabcde")


async def test_expect_100_continue_is_answered_when_the_body_is_read(
    front: Callable[[Handler], Awaitable[int]],
) -> None:
    port = await front(echo)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"body")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK") and await reader.readexactly(4) == b"body"
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n", b"431"),
        (b"GET / HTTP/3\r\n\r\n", b"400"),  # not a version (llhttp: "Expected dot")
        (b"GET / HTTP/3.0\r\nHost: h\r\n\r\n", b"505"),
    ],
    ids=["smuggling", "head-too-large", "not-a-version", "version"],
)
async def test_bad_requests_get_an_error_and_the_connection_closes(
    front: Callable[[Handler], Awaitable[int]], request_bytes: bytes, status: bytes
) -> None:
    port = await front(echo)
    got = await talk(port, request_bytes)
    assert got.startswith(b"HTTP/1.1 " + status) and b"Connection: close" in got


async def test_a_head_request_gets_the_declared_length_and_no_body(
    front: Callable[[Handler], Awaitable[int]],
) -> None:
    async def head(request: Request, out: Connection) -> None:
        out.send(200, b"OK", b"", b"", declared_length=1234)

    port = await front(head)
    got = await talk(port, b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert got.endswith(b"Content-Length: 1234\r\nConnection: close\r\n\r\n")


async def test_a_client_hanging_up_cancels_its_handler(
    front: Callable[[Handler], Awaitable[int]],
) -> None:
    cancelled = asyncio.Event()

    async def forever(request: Request, out: Connection) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    port = await front(forever)
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(0.01)
    writer.close()
    await writer.wait_closed()
    await eventually(cancelled.is_set, "the handler is cancelled")


def _outcome(parse: Callable[[bytes], Head], data: bytes) -> object:
    try:
        head = parse(data)
    except ProtocolError as exc:
        return exc.status
    return {k: getattr(head, k) for k in vars(Head) if not k.startswith("_")}


def test_the_one_regex_path_and_the_line_by_line_path_agree_on_every_head() -> None:
    """A well-formed head is taken by one regex call; anything else goes the long
    way, which names the fault. Both must judge every head alike (5,000 seeded
    mutations of valid and hostile heads)."""
    from skyctl.router.http1 import _parse_request_slowly

    rng = random.Random(7)
    bases = [
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: keep-alive, Foo\r\n"
        b"Foo: 1\r\nX-Forwarded-For: a\r\nx-forwarded-for: b\r\nExpect: 100-continue",
        b"OPTIONS * HTTP/1.0\r\nTransfer-Encoding: chunked",
        b"POST /a?b HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nAuthorization: k",
    ]
    alphabet = b" \r\n\x00:/aZ09-\tHTTP1.,"
    for _ in range(5000):
        data = bytearray(rng.choice(bases))
        for _ in range(rng.randint(0, 3)):
            i = rng.randrange(len(data))
            if rng.random() < 0.5:
                data[i] = rng.choice(alphabet)
            else:
                data[i:i] = bytes([rng.choice(alphabet)])
        head = bytes(data)
        fast = _outcome(lambda d: parse_request_head(d, 5), head + b"\r\n")
        slow = _outcome(lambda d: _parse_request_slowly(d, 5), head)
        assert fast == slow, head


async def test_a_body_that_came_whole_with_its_head_reaches_a_handler_as_a_stream(
    front: Callable[[Handler], Awaitable[int]],
) -> None:
    bodies: list[bytes | None] = []

    async def read(request: Request, out: Connection) -> None:
        assert request.whole is None and request.body is not None  # a stream for handlers
        bodies.append(await request.body.read_all())
        out.send(200, b"OK", b"", b"")

    port = await front(read)
    got = await talk(
        port,
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nde",
    )
    assert got.count(b"HTTP/1.1 200 OK") == 2 and bodies == [b"abc", b"de"]
