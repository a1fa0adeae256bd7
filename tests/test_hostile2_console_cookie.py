"""The console's cookie reads the console only, and stays on its paths.

A browser sends a cookie for 127.0.0.1 to every port of that host. Set with
``Path=/``, the console's cookie went with every request to each service's
endpoint (127.0.0.1:PORT), which forwards it to the replicas, and to any other
local server the browser visited, and there it read the controller's API:
``/v1/services``, ``/metrics`` and replica logs. It is now scoped to
``/console`` and accepted on the console's paths only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from skyctl.console import auth
from tests.helpers.fake_controller import api_client, fake_controller

TOKEN = "q" * 40
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    async with fake_controller(tmp_path) as controller, api_client(controller, TOKEN) as c:
        yield c


async def test_the_login_scopes_the_cookie_to_the_console(client: Client) -> None:
    query = {"token": auth.login_token(TOKEN)}
    async with client.get("/console/login", params=query, allow_redirects=False) as r:
        assert r.status == 302
        cookie = r.cookies[auth.COOKIE]
    assert cookie["path"] == "/console"
    assert cookie["httponly"] and cookie["samesite"] == "Strict"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/console/", 200),
        ("/console/static/console.js", 200),
        ("/v1/services", 401),
        ("/metrics", 401),
        ("/v1/services/web/replicas/1/log", 401),
    ],
)
async def test_the_cookie_reads_the_console_and_nothing_else(
    client: Client, path: str, status: int
) -> None:
    cookie = {"Cookie": f"{auth.COOKIE}={auth.cookie_value(TOKEN)}"}
    async with client.get(path, headers=cookie) as r:
        assert r.status == status
