"""Numbers in the controller API's paths and queries are ASCII digits, of any length.

A replica id of more than 4,300 digits (``DELETE /v1/services/web/replicas/111...``)
reached ``int()``, which refuses such strings: a ValueError and a 500. And
``int()`` is lenient where an id or a count should not be: the route's ``\\d``
and ``int()`` took other scripts' digits (``/replicas/\\u0661/log``, an
Arabic-Indic one, was replica 1), ``limit= 1``, ``limit=1_000`` and the
full-width ``limit=\\uff11``. Now a long id is a 404 naming it shortened, and
anything but ASCII digits is refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.helpers.fake_controller import api_client, fake_controller

TOKEN = "n" * 40
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SPEC = "name: web\nservice:\n  replicas: 1\nrun: sleep 1000\n"
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    async with fake_controller(tmp_path) as controller, api_client(controller, TOKEN, SPEC) as c:
        yield c


LONG = "1" * 5000


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", f"/v1/services/web/replicas/{LONG}"),
        ("GET", f"/v1/services/web/replicas/{LONG}/log"),
    ],
)
async def test_a_replica_id_of_thousands_of_digits_is_a_404_not_a_500(
    client: Client, method: str, path: str
) -> None:
    resp = await client.request(method, path, headers=AUTH)
    assert resp.status == 404
    error = (await resp.json())["error"]
    assert error == "service 'web' has no replica 11111111111111111111... (5000 digits)"


async def test_leading_zeros_still_name_the_replica(client: Client) -> None:
    resp = await client.delete("/v1/services/web/replicas/0000000000000000007", headers=AUTH)
    assert (await resp.json())["error"] == "service 'web' has no live replica 7"


@pytest.mark.parametrize(
    "path", ["/v1/services/web/replicas/\u0661/log", "/v1/services/web/replicas/\uff11"]
)
async def test_a_replica_id_in_other_digits_matches_no_route(client: Client, path: str) -> None:
    resp = await client.request(
        "DELETE" if path.endswith("\uff11") else "GET", quote(path), headers=AUTH
    )
    assert resp.status == 404
    assert (await resp.json())["error"] == "Not Found"


@pytest.mark.parametrize("limit", [" 1", "1 ", "1_000", "\uff11", "\u0661", "+1", "0x10"])
async def test_a_limit_that_int_would_stretch_to_read_is_refused(
    client: Client, limit: str
) -> None:
    resp = await client.get(f"/v1/services/web/events?limit={quote(limit)}", headers=AUTH)
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error == f"limit: {limit!r} is not a whole number from 0 to 2147483647"


async def test_plain_numbers_still_work(client: Client) -> None:
    assert (await client.get("/v1/services/web/events?limit=5", headers=AUTH)).status == 200
