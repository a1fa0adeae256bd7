"""An answer sent before the request's body came says the connection closes.

RFC 9110 section 10.1.1: a server answering before it read the whole request
content SHOULD say whether it closes the connection. The router closes it
(the rest of the body is unread), and now says so with ``Connection: close``:
before, a client holding its body for ``Expect: 100-continue`` got a 401 that
looked keep-alive, sent its next request on that connection and found it
closed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp import web

from skyctl.spec import Auth
from tests.test_router_helpers import FakeReplica, Harness, open_harness, section
from tests.test_router_hostile import Raw, status


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with open_harness() as harness:
        yield harness


def head_of(answer: bytes) -> list[bytes]:
    return answer.split(b"\r\n\r\n", 1)[0].lower().split(b"\r\n")


async def test_a_401_before_a_100_continue_body_says_close(h: Harness) -> None:
    replica = await h.replica(1)
    sec = replace(section(), auth=Auth(api_key_secrets=("K",)))
    _, url = await h.router([replica.backend], sec, secrets={"K": "sk-1"})
    raw = await Raw.open(url)
    try:
        await raw.send(
            b"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        answer = await raw.read_all()  # the router closes after it
    finally:
        await raw.close()
    assert status(answer) == 401 and b"connection: close" in head_of(answer)
    assert replica.hits == 0


async def test_a_replica_answering_before_the_upload_ends_is_passed_on_with_close(
    h: Harness,
) -> None:
    async def refuse_unread(_: FakeReplica, request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(status=413, text="too big")

    replica = await h.replica(1, behaviour=refuse_unread)
    _, url = await h.router([replica.backend])
    raw = await Raw.open(url)
    try:  # 8 MiB announced (streamed: over max_buffer_bytes), 64 KiB sent
        await raw.send(
            b"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 8388608\r\n\r\n" + b"x" * 65536
        )
        answer = await raw.reader.readuntil(b"\r\n\r\n")
    finally:
        await raw.close()
    assert status(answer) == 413 and b"connection: close" in head_of(answer)


async def test_an_answer_after_the_whole_body_keeps_the_connection(h: Harness) -> None:
    replica = await h.replica(1)
    _, url = await h.router([replica.backend])
    raw = await Raw.open(url)
    try:
        for _ in range(2):
            await raw.send(b"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\n\r\nhello")
            answer = await raw.reader.readuntil(b"\r\n\r\n")
            assert status(answer) == 200 and b"connection: close" not in head_of(answer)
            length = next(
                int(x.split(b":")[1]) for x in head_of(answer) if x.startswith(b"content-length")
            )
            await raw.reader.readexactly(length)
    finally:
        await raw.close()
