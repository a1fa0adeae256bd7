"""Heads parsed once by their bytes (skyctl.router.headcache): the same answers as
parsing every time, the forwarded lines still per request, the cache bounded."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from skyctl.router import headcache
from skyctl.router.client import Pool, Response
from skyctl.router.front import Connection, Request
from skyctl.router.headers import downstream_lines, upstream_lines
from skyctl.router.http1 import Head, parse_request_head, parse_response_head
from skyctl.router.listener import FrontServer
from tests.test_router_client import RawServer, Serve, get, keep_answering, pool, servers
from tests.test_router_http1 import Handler, front, talk

__all__ = ["front", "pool", "servers"]  # the fixtures, used by name

HEAD = b"GET /v1/models HTTP/1.1\r\nHost: svc\r\nAccept: */*\r\nConnection: keep-alive, X-Hop\r\n"


async def test_a_repeated_request_head_is_parsed_once_and_answered_the_same(
    front: Callable[[Handler], Awaitable[int]],
) -> None:
    seen: list[Request] = []

    async def answer(request: Request, out: Connection) -> None:
        seen.append(request)
        out.send(200, b"OK", b"X-Path: %b\r\n" % request.target, b"")

    port = await front(answer)
    other = b"GET /other HTTP/1.1\r\nHost: svc\r\n\r\n"
    last = b"GET /last HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n"
    got = await talk(port, HEAD + b"\r\n" + HEAD + b"\r\n" + other + HEAD + b"\r\n" + last)
    assert got.count(b"HTTP/1.1 200 OK") == 5 and got.count(b"X-Path: /v1/models") == 3
    first, second, third, fourth, _ = (r.head for r in seen)
    assert first is second is fourth and third is not first  # one parse per distinct head
    assert third.target == b"/other"


async def test_a_lowered_header_limit_applies_to_heads_seen_before() -> None:
    server = FrontServer(lambda request, out: _never())
    server.heads[HEAD + b"\r\n"] = parse_request_head(HEAD)
    server.max_headers = 100
    assert server.heads  # unchanged limit: kept
    server.max_headers = 2  # HEAD has 3 lines: a 431 now, not the head parsed under 100
    assert not server.heads


async def _never() -> None:
    raise AssertionError("not called")


def test_forwarded_lines_are_made_once_per_head_but_the_per_request_parts_are_not() -> None:
    head = parse_request_head(HEAD + b"X-Hop: 1\r\nAuthorization: Bearer k\r\n")

    def lines(rid: bytes, ip: bytes, drop: bool) -> bytes:
        return upstream_lines(head, rid=rid, client_ip=ip, scheme=b"http", drop_authorization=drop)

    one = lines(b"r1", b"10.0.0.1", False)
    two = lines(b"r2", b"10.0.0.2", False)
    assert b"X-Forwarded-For: 10.0.0.1\r\n" in one and b"X-Request-Id: r1\r\n" in one
    assert b"X-Forwarded-For: 10.0.0.2\r\n" in two and b"X-Request-Id: r2\r\n" in two
    assert b"Authorization: Bearer k" in one and b"X-Hop" not in one  # named in Connection
    dropped = lines(b"r3", b"10.0.0.3", True)  # the same head, credentials kept back
    assert b"Authorization" not in dropped and b"Accept: */*\r\n" in dropped
    assert b"Authorization: Bearer k" in lines(b"r4", b"10.0.0.4", False)  # each way kept apart


def test_downstream_lines_of_a_shared_response_head_carry_each_request_id() -> None:
    head = parse_response_head(b"HTTP/1.1 200 OK\r\nServer: x\r\nConnection: keep-alive\r\n")
    assert downstream_lines(head, rid=b"a") == b"Server: x\r\nX-Request-Id: a\r\n"
    assert downstream_lines(head, rid=b"b") == b"Server: x\r\nX-Request-Id: b\r\n"


def test_the_cache_is_bounded_in_entries_and_in_the_size_of_a_head() -> None:
    cache: dict[bytes, Head] = {}
    head = Head()
    headcache.remember(cache, b"x" * (headcache.MAX_KEY_BYTES + 1), head)
    assert not cache  # a long head is parsed each time
    for i in range(headcache.MAX_ENTRIES):
        headcache.remember(cache, b"%d" % i, head)
    assert len(cache) == headcache.MAX_ENTRIES
    headcache.remember(cache, b"one more", head)
    assert list(cache) == [b"one more"]  # starts over


async def test_a_replica_repeating_its_response_head_is_parsed_once(
    servers: Callable[[Serve], Awaitable[RawServer]], pool: Pool
) -> None:
    server = await servers(keep_answering)
    responses: list[Response] = []
    for _ in range(3):
        resp = await pool.request(server.origin, b"GET", get())
        assert await resp.body.read() == b"hello"
        responses.append(resp)
    heads = [r.head for r in responses]
    assert heads[0] is heads[1] is heads[2] and heads[0].status == 200
    assert heads[0].content_length == 5 and len(pool.heads) == 1


async def test_the_cache_stops_looking_while_heads_do_not_repeat_and_looks_again_later(
    front: Callable[[Handler], Awaitable[int]],
) -> None:
    seen: list[Request] = []

    async def answer(request: Request, out: Connection) -> None:
        seen.append(request)
        out.send(200, b"OK", b"", b"")

    port = await front(answer)
    fresh = [b"GET /%d HTTP/1.1\r\nHost: svc\r\n\r\n" % i for i in range(headcache.LOOKUPS)]
    # LOOKUPS heads never seen before: the cache stops looking, so HEAD is parsed twice
    last = b"GET /last HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n"
    await talk(port, b"".join(fresh) + HEAD + b"\r\n" + HEAD + b"\r\n" + last)
    assert len(seen) == headcache.LOOKUPS + 3
    assert seen[-3].head is not seen[-2].head and seen[-2].head.target == b"/v1/models"
    # PAUSE heads later it looks again: a head seen then is a hit once more
    seen.clear()
    more = [b"GET /more HTTP/1.1\r\nHost: svc\r\n\r\n"] * headcache.PAUSE
    await talk(port, b"".join(more) + HEAD + b"\r\n" + HEAD + b"\r\n" + last)
    assert len(seen) == headcache.PAUSE + 3 and seen[-3].head is seen[-2].head
