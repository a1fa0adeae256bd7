"""The router accepts an absolute-form request target (RFC 9112 section 3.2.2).

``GET http://host/path HTTP/1.1`` is what a client talking to a proxy sends;
a server MUST accept it. The router frames it in origin-form (the path, ``/``
when empty, and the query) and takes the target's authority in place of the
Host header (which is then ignored, and may be absent), as nginx does. Only
``http`` and ``https`` URIs are taken; one without a host or with userinfo
(RFC 9110 4.2.1, 4.2.4) is refused 400, like any other target that is no path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from skyctl.router.http1 import ProtocolError, parse_request_head
from tests.helpers.waiting import eventually
from tests.test_router_helpers import Harness, open_harness
from tests.test_router_hostile import exchange, status


@pytest.mark.parametrize(
    ("head", "target", "host"),
    [
        (
            b"GET http://svc.example/v1/models?x=1 HTTP/1.1\r\nHost: svc.example",
            b"/v1/models?x=1",
            b"svc.example",
        ),
        (b"GET http://svc.example HTTP/1.1\r\nHost: svc.example", b"/", b"svc.example"),
        (b"GET http://svc.example?q HTTP/1.1\r\nHost: svc.example", b"/?q", b"svc.example"),
        (b"GET HTTPS://svc:8443/p HTTP/1.1\r\nHost: svc:8443", b"/p", b"svc:8443"),
        (b"GET http://[::1]:80/p HTTP/1.1\r\nHost: x", b"/p", b"[::1]:80"),
        (b"POST http://target/p HTTP/1.1\r\nHost: other", b"/p", b"target"),  # Host ignored
        (b"GET http://target/p HTTP/1.1", b"/p", b"target"),  # Host may be absent
        (b"GET http://target/p HTTP/1.0", b"/p", b"target"),
        (b"GET  http://target/p  HTTP/1.1", b"/p", b"target"),  # the slow path too
        (b"OPTIONS http://target HTTP/1.1", b"*", b"target"),  # 3.2.4: server-wide
        (b"OPTIONS http://target/ HTTP/1.1", b"/", b"target"),
        (b"OPTIONS http://target?q HTTP/1.1", b"/?q", b"target"),
    ],
)
def test_an_absolute_form_target_is_framed_in_origin_form_with_its_authority_as_host(
    head: bytes, target: bytes, host: bytes
) -> None:
    parsed = parse_request_head(head)
    assert (parsed.target, parsed.host) == (target, host)


@pytest.mark.parametrize(
    "head",
    [
        b"GET http:///p HTTP/1.1\r\nHost: h",  # no host
        b"GET http://:80/p HTTP/1.1\r\nHost: h",
        b"GET http://user@h/p HTTP/1.1\r\nHost: h",  # userinfo
        b"GET http://h h/p HTTP/1.1\r\nHost: h",
        b"GET http://h#frag HTTP/1.1\r\nHost: h",
        b"GET ftp://h/p HTTP/1.1\r\nHost: h",  # no forward proxy for other schemes
        b"GET http:/h/p HTTP/1.1\r\nHost: h",
        b"GET http://h/p HTTP/1.1\r\nHost: a\r\nHost: b",  # Host still at most once
        b"GET http://h/p HTTP/1.1\r\nHost: a b",  # and valid when sent
        b"CONNECT http://h/ HTTP/1.1\r\nHost: h",
    ],
)
def test_a_bad_absolute_form_target_is_refused_400(head: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_request_head(head)
    assert caught.value.status == 400


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with open_harness() as harness:
        yield harness


async def test_an_absolute_form_request_reaches_the_replica_in_origin_form(h: Harness) -> None:
    replica = await h.replica(1)
    _, url = await h.router([replica.backend])
    answer = await exchange(
        url,
        b"GET http://svc.example/v1/models?x=1 HTTP/1.1\r\nHost: spoofed\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert status(answer) == 200
    await eventually(lambda: replica.hits == 1, "the replica saw the request")
    seen = replica.seen[0]
    assert seen.path == "/v1/models?x=1"
    assert seen.headers["X-Forwarded-Host"] == "svc.example"


async def test_the_routers_own_health_endpoint_answers_an_absolute_form_target(
    h: Harness,
) -> None:
    replica = await h.replica(1)
    _, url = await h.router([replica.backend])
    answer = await exchange(
        url, b"GET http://svc/-/skyctl/health HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n"
    )
    assert status(answer) == 200
    assert replica.hits == 0
