"""The controller API meets malformed requests with a one-line 4xx, never a 500.

A body that is not JSON, JSON that is not an object or lacks ``yaml``, JSON
nested past the parser's depth, a query ``limit``/``tail`` that is not a
number, a replica id too large for SQLite, a method a route does not take:
each is a JSON ``{"error": one line, "exit_code": n}`` naming what was wrong
(they were tracebacks in the controller's log and ``500 Internal Server
Error``), and the service the request named is untouched.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from skyctl.clock import FakeClock
from skyctl.controller import Controller
from skyctl.controller.api import MAX_BODY
from skyctl.controller.routing_feed import RoutingFeed
from skyctl.routing_wire import REPORT_PATH
from tests.helpers.fake_controller import api_client, fake_controller

TOKEN = "h" * 40
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SPEC = "name: web\nservice:\n  replicas: 1\nrun: sleep 1000\n"
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def controller(tmp_path: Path) -> AsyncIterator[Controller]:
    async with fake_controller(tmp_path) as controller:
        yield controller


@pytest.fixture
async def client(controller: Controller) -> AsyncIterator[Client]:
    async with api_client(controller, TOKEN, SPEC) as c:
        yield c


DEEP = b"[" * 50_000 + b"]" * 50_000
BAD_BODIES = {
    "not json": (b"{yaml: ", "not valid JSON"),
    "a list": (b'["yaml"]', "expected a JSON object, got list"),
    "a string": (b'"yaml"', "expected a JSON object, got str"),
    "null": (b"null", "expected a JSON object, got NoneType"),
    "no yaml key": (b'{"spec": "x"}', "missing key 'yaml'"),
    "nested past the parser": (DEEP, "nested too deeply"),
}


WRITES = [("POST", "/v1/services"), ("PUT", "/v1/services/web")]


@pytest.mark.parametrize(("method", "path"), WRITES)
@pytest.mark.parametrize(("body", "says"), list(BAD_BODIES.values()), ids=list(BAD_BODIES))
async def test_a_body_that_is_not_a_spec_object_is_a_one_line_400(
    client: Client, method: str, path: str, body: bytes, says: str
) -> None:
    resp = await client.request(method, path, headers=AUTH, data=body)
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error.startswith("request body: ") and says in error and "\n" not in error
    listed = await (await client.get("/v1/services", headers=AUTH)).json()
    assert [s["name"] for s in listed] == ["web"]


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/v1/services/web/events?limit=abc", "limit"),
        ("/v1/services/web/events?limit=1e999", "limit"),
        ("/v1/services/web/events?limit=99999999999999999999999", "limit"),
        ("/v1/services/web/events?limit=-1", "limit"),
    ],
)
async def test_a_query_number_that_is_not_one_names_its_parameter(
    client: Client, path: str, key: str
) -> None:
    resp = await client.get(path, headers=AUTH)
    assert resp.status == 400
    assert (await resp.json())["error"].startswith(f"{key}: ")


HUGE = "9" * 30


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/v1/services/web/replicas/{HUGE}/log"),
        ("GET", f"/v1/services/web/replicas/{HUGE}/log?tail=3"),
        ("DELETE", f"/v1/services/web/replicas/{HUGE}"),
    ],
)
async def test_a_replica_id_too_large_for_the_store_is_not_found(
    client: Client, method: str, path: str
) -> None:
    resp = await client.request(method, path, headers=AUTH)
    assert resp.status == 404
    assert (await resp.json())["error"] == f"service 'web' has no replica {HUGE}"


async def test_a_method_the_route_does_not_take_and_a_huge_body_answer_json(
    client: Client,
) -> None:
    for method, path in (("PATCH", "/v1/services/web"), ("GET", "/v1/shutdown")):
        resp = await client.request(method, path, headers=AUTH)
        assert resp.status == 405
        assert await resp.json() == {"error": "Method Not Allowed", "exit_code": 1}
    resp = await client.post("/v1/services", headers=AUTH, data=b"x" * (MAX_BODY + 1))
    assert resp.status == 413
    assert (await resp.json())["error"] == f"request body over {MAX_BODY} bytes"


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"yaml": SPEC, "name": 5}, "name"),
        ({"yaml": SPEC, "source": {"a": 1}}, "source"),
        ({"yaml": SPEC, "mode": ["rolling"]}, "mode"),
    ],
)
async def test_a_body_key_that_is_not_a_string_is_named(
    client: Client, body: dict[str, object], key: str
) -> None:
    for method, path in WRITES:
        resp = await client.request(method, path, headers=AUTH, json=body)
        assert resp.status == 400
        assert (await resp.json())["error"] == f"request body: {key}: expected a string"


async def raw_status(client: Client, head: bytes) -> int:
    """The status line's code for a request written byte for byte (aiohttp's client
    will not send header bytes that are not UTF-8)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        writer.write(b"GET " + head + b"\r\nConnection: close\r\n\r\n")
        await writer.drain()
        return int((await reader.readline()).split()[1])
    finally:
        writer.close()


@pytest.mark.parametrize(
    "head",
    [
        b"/v1/health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe",
        b"/console/ HTTP/1.1\r\nHost: x\r\nCookie: skyctl_console=\xff\xfe",
        b"/console/login?token=%ff%fe HTTP/1.1\r\nHost: x",
    ],
    ids=["bearer", "cookie", "login token"],
)
async def test_credentials_that_are_not_utf8_are_refused_not_a_500(
    client: Client, head: bytes
) -> None:
    assert await raw_status(client, head) == 401


async def test_a_routing_report_nested_past_the_parser_is_a_400(
    client: Client, controller: Controller
) -> None:
    controller.routing_feed = RoutingFeed(FakeClock())  # as with external routers
    resp = await client.post(REPORT_PATH, headers=AUTH, data=DEEP)
    assert resp.status == 400
    assert (await resp.json())["error"].startswith("report: not a routing report (")
