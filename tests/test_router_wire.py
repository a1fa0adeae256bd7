"""The router frames HTTP/1.1 as llhttp does (the parser behind Node and uvicorn).

Two proofs:

- a differential fuzz: 100,000 generated request streams and 100,000 response
  streams (well-formed, hostile, mutated at a byte, pipelined), each framed by
  the router's parser and by llhttp (httptools): the same messages (method,
  target, version, header list, body) and the same end (complete, waiting,
  upgraded, refused) on every input, llhttp's framing taken with the router's
  documented rules (``tests.helpers.wire.router_policy``);
- a corpus of the published request-smuggling techniques (CL.TE, TE.CL, TE.TE
  obfuscations, obsolete whitespace and control bytes, Host, chunk sizes,
  obs-fold), sent over a socket to a running router: the answer, what the
  replica saw, and llhttp's verdict on the same bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.helpers import wire, wire_gen
from tests.helpers.waiting import eventually
from tests.test_router_helpers import Harness, open_harness
from tests.test_router_hostile import exchange, status


def _disagreements(kind: str, seed: int, count: int) -> list[tuple[bytes, object, object]]:
    bad = []
    for data in wire_gen.messages(seed, count, kind):
        if kind == "request":
            ours = wire.router_requests(data)
            theirs = wire.router_policy(wire.llhttp_requests(data))
        else:
            ours = wire.router_responses(data)
            theirs = wire.first_response(wire.response_policy(wire.llhttp_responses(data), data))
        if not wire.same(ours, theirs):
            bad.append((data, ours.key(), theirs.key()))
    return bad


@pytest.mark.parametrize("kind", ["request", "response"])
def test_the_router_frames_100000_generated_streams_as_llhttp_does(kind: str) -> None:
    bad = _disagreements(kind, seed=14, count=100_000)
    assert bad == [], f"{len(bad)} disagreements, first: {bad[:3]}"


def test_the_generator_reaches_every_outcome() -> None:
    """The fuzz means something only if its inputs are framed in every way."""
    ends: dict[str, int] = {}
    messages = plain_upgrades = 0
    for data in wire_gen.messages(14, 10000, "request"):
        framing = wire.router_requests(data)
        ends[framing.end] = ends.get(framing.end, 0) + 1
        messages += len(framing.messages)
        # an HTTP/1.0 Upgrade: llhttp upgrades, the router forwards it plain
        plain_upgrades += wire.router_policy(wire.llhttp_requests(data)).end == "plain-1.0"
    assert set(ends) == {"complete", "partial", "upgrade", "error"}
    assert min(ends.values()) > 20 and messages > 1000 and plain_upgrades > 5


# ---- the smuggling corpus, through a running router ----------------------------------------

H = b"Host: svc\r\n"
POST = b"POST / HTTP/1.1\r\n" + H
SMUGGLING = [
    # CL.TE and TE.CL: both framings in one request
    ("cl-te", POST + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", 400),
    (
        "te-cl",
        POST + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
        400,
    ),
    # TE.TE: a Transfer-Encoding one parser reads and another does not
    ("te-vtab", POST + b"Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n", 400),
    ("te-formfeed", POST + b"Transfer-Encoding: \x0cchunked\r\n\r\n0\r\n\r\n", 400),
    ("te-trailing-vtab", POST + b"Transfer-Encoding: chunked\x0b\r\n\r\n0\r\n\r\n", 400),
    ("te-xchunked", POST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
    ("te-space-before-colon", POST + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
    ("te-tab-after-value", POST + b"Transfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n", 400),
    (
        "te-twice",
        POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("te-identity", POST + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400),
    ("te-gzip-chunked", POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ("te-http10", b"POST / HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("te-name-lf", POST + b"Transfer-Encoding\n: chunked\r\n\r\n0\r\n\r\n", 400),
    ("te-leading-space", POST + b"X: y\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("te-after-bare-lf", POST + b"X: y\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    # Content-Length variants
    ("cl-twice", POST + b"Content-Length: 0\r\nContent-Length: 5\r\n\r\nabcde", 400),
    ("cl-twice-equal", POST + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nabcde", 400),
    ("cl-list", POST + b"Content-Length: 5, 5\r\n\r\nabcde", 400),
    ("cl-plus", POST + b"Content-Length: +5\r\n\r\nabcde", 400),
    ("cl-hex", POST + b"Content-Length: 0x5\r\n\r\nabcde", 400),
    ("cl-vtab", POST + b"Content-Length: \x0b5\r\n\r\nabcde", 400),
    ("cl-empty", POST + b"Content-Length:\r\n\r\n", 400),
    ("te-empty", POST + b"Transfer-Encoding: \t\r\nContent-Length: 5\r\n\r\nabcde", 400),
    ("cl-overflow", POST + b"Content-Length: 99999999999999999999\r\n\r\n", 400),
    # chunk sizes and lines
    ("chunk-0x", POST + b"Transfer-Encoding: chunked\r\n\r\n0x5\r\nabcde\r\n0\r\n\r\n", 400),
    ("chunk-space", POST + b"Transfer-Encoding: chunked\r\n\r\n5 \r\nabcde\r\n0\r\n\r\n", 400),
    (
        "chunk-space-ext",
        POST + b"Transfer-Encoding: chunked\r\n\r\n5 ;a\r\nabcde\r\n0\r\n\r\n",
        400,
    ),
    ("chunk-negative", POST + b"Transfer-Encoding: chunked\r\n\r\n-5\r\nabcde\r\n0\r\n\r\n", 400),
    (
        "chunk-overflow",
        POST + b"Transfer-Encoding: chunked\r\n\r\n10000000000000005\r\nab\r\n",
        400,
    ),
    ("chunk-bare-lf", POST + b"Transfer-Encoding: chunked\r\n\r\n5\nabcde\r\n0\r\n\r\n", 400),
    ("chunk-ext-lf", POST + b"Transfer-Encoding: chunked\r\n\r\n5;a\nb\r\nabcde\r\n0\r\n\r\n", 400),
    ("chunk-data-long", POST + b"Transfer-Encoding: chunked\r\n\r\n2\r\nabcde\r\n0\r\n\r\n", 400),
    ("chunk-empty-ext", POST + b"Transfer-Encoding: chunked\r\n\r\n5;\r\nabcde\r\n0\r\n\r\n", 400),
    ("trailer-cl", POST + b"Transfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\n\r\n", 400),
    ("trailer-fold", POST + b"Transfer-Encoding: chunked\r\n\r\n0\r\nA: b\r\n c\r\n\r\n", 400),
    # obsolete whitespace and control bytes
    ("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n b\r\n\r\n", 400),
    ("bare-cr", b"GET / HTTP/1.1\r\n" + H + b"X: a\rb\r\n\r\n", 400),
    ("nul", b"GET / HTTP/1.1\r\n" + H + b"X: a\x00b\r\n\r\n", 400),
    ("ctl-in-value", b"GET / HTTP/1.1\r\n" + H + b"X: a\x01b\r\n\r\n", 400),
    ("del-in-value", b"GET / HTTP/1.1\r\n" + H + b"X: a\x7fb\r\n\r\n", 400),
    ("ctl-in-target", b"GET /a\x7f HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("tab-in-target", b"GET /a\tb HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("space-after-version", b"GET / HTTP/1.1 \r\n" + H + b"\r\n", 400),
    ("lf-only-head", b"GET / HTTP/1.1\n" + H.replace(b"\r", b"") + b"\n", 400),
    # Host (RFC 9112 3.2)
    ("no-host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two-hosts", b"GET / HTTP/1.1\r\n" + H + b"host: evil\r\n\r\n", 400),
    ("two-hosts-http10", b"GET / HTTP/1.0\r\n" + H + H + b"\r\n", 400),
    ("host-space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    ("host-list", b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", 400),
    ("host-slash", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    ("host-userinfo", b"GET / HTTP/1.1\r\nHost: u@h\r\n\r\n", 400),
    ("host-bad-port", b"GET / HTTP/1.1\r\nHost: h:8x\r\n\r\n", 400),
    ("host-bad-literal", b"GET / HTTP/1.1\r\nHost: [::g]\r\n\r\n", 400),
    # request lines
    ("absolute-form-userinfo", b"GET http://u@evil/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("absolute-form-no-host", b"GET http:///p HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("absolute-form-ftp", b"GET ftp://evil/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("connect", b"CONNECT evil:443 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("unknown-method", b"FOO / HTTP/1.1\r\n" + H + b"\r\n", 501),
    ("http2-version", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("pri-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
]
# accepted, as llhttp accepts them: (name, bytes, statuses, the bodies the replica saw)
ACCEPTED = [
    (
        "pipelined",
        POST + b"Content-Length: 5\r\n\r\nabcdeGET / HTTP/1.1\r\n" + H + b"\r\n",
        [200, 200],
        [b"abcde", b""],
    ),
    ("cl-trailing-space", POST + b"Content-Length: 5 \r\n\r\nabcde", [200], [b"abcde"]),
    ("cl-trailing-tab", POST + b"Content-Length: 5\t\r\n\r\nabcde", [200], [b"abcde"]),
    ("cl-leading-zeros", POST + b"Content-Length: 005\r\n\r\nabcde", [200], [b"abcde"]),
    (
        "te-case",
        POST + b"Transfer-Encoding: ChUnKeD\r\n\r\n5\r\nabcde\r\n0\r\n\r\n",
        [200],
        [b"abcde"],
    ),
    (
        "chunk-ext",
        POST + b'Transfer-Encoding: chunked\r\n\r\n5;a=b;c="d e"\r\nabcde\r\n0\r\n\r\n',
        [200],
        [b"abcde"],
    ),
    ("double-space", b"GET  /  HTTP/1.1\r\n" + H + b"\r\n", [200], [b""]),
    ("http10-no-host", b"GET / HTTP/1.0\r\n\r\n", [200], [b""]),
    ("host-port", b"GET / HTTP/1.1\r\nHost: svc.example:8080\r\n\r\n", [200], [b""]),
    ("host-ipv6", b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", [200], [b""]),
    ("host-empty", b"GET / HTTP/1.1\r\nHost: \r\n\r\n", [200], [b""]),
]


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with open_harness() as harness:
        yield harness


async def echo(replica: object, request: object) -> object:
    from aiohttp import web

    assert isinstance(request, web.BaseRequest)
    return web.Response(body=await request.read())


@pytest.mark.parametrize(
    ("request_bytes", "expected"), [c[1:] for c in SMUGGLING], ids=[c[0] for c in SMUGGLING]
)
async def test_smuggling_techniques_are_refused_and_never_reach_a_replica(
    h: Harness, request_bytes: bytes, expected: int
) -> None:
    assert wire.router_policy(wire.llhttp_requests(request_bytes)).end in ("error", "partial")
    replica = await h.replica(1)
    _, url = await h.router([replica.backend])
    answer = await exchange(url, request_bytes)
    assert status(answer) == expected
    assert b"Connection: close" in answer.split(b"\r\n\r\n")[0]
    await asyncio.sleep(0.05)
    assert replica.hits == 0


@pytest.mark.parametrize(
    ("request_bytes", "statuses", "bodies"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED]
)
async def test_what_llhttp_accepts_is_forwarded_as_llhttp_frames_it(
    h: Harness, request_bytes: bytes, statuses: list[int], bodies: list[bytes]
) -> None:
    framing = wire.router_policy(wire.llhttp_requests(request_bytes))
    assert [m.body for m in framing.messages] == bodies
    replica = await h.replica(1, behaviour=_echo_body)
    _, url = await h.router([replica.backend])
    raw = request_bytes
    if b"HTTP/1.0" not in raw.split(b"\r\n", 1)[0]:
        raw += b"GET /last HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n"
    answer = await exchange(url, raw)
    lines = answer.split(b"\r\n")
    got = [int(line.split(b" ")[1]) for line in lines if line.startswith(b"HTTP/1.1 ")]
    assert got[: len(statuses)] == statuses
    await eventually(lambda: replica.hits >= len(bodies), "the replica saw the requests")
    assert [s.body for s in replica.seen[: len(bodies)]] == bodies


async def _echo_body(replica: object, request: object) -> object:
    from aiohttp import web

    assert isinstance(request, web.BaseRequest)
    body = await request.read()
    seen = replica.seen[-1]  # type: ignore[attr-defined]
    seen.body = body
    return web.Response(body=body)
