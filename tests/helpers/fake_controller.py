"""A controller on a fake clock and a fresh store, no process: for API and input tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from providers.registry import ProviderSet
from skyctl.clock import FakeClock
from skyctl.controller import Controller
from skyctl.controller.api import make_app
from skyctl.store import Store


@asynccontextmanager
async def fake_controller(tmp_path: Path) -> AsyncIterator[Controller]:
    """A :class:`Controller` over ``tmp_path/state.db`` and the local provider (its state
    under ``tmp_path/local``), stopped and its store closed on exit."""
    clock = FakeClock()
    store = Store(tmp_path / "state.db")
    providers = ProviderSet(config={}, clock=clock, local_state=tmp_path / "local")
    controller = Controller(store, providers, clock)
    try:
        yield controller
    finally:
        await controller.stop(0)
        store.close()


Client = TestClient[web.Request, web.Application]


@asynccontextmanager
async def api_client(
    controller: Controller, token: str, spec: str | None = None
) -> AsyncIterator[Client]:
    """A test client of ``controller``'s API (bearer ``token``), with the service ``spec``
    (a YAML text) created first if given; closed on exit."""
    client = TestClient(TestServer(make_app(controller, token, lambda: None)))
    await client.start_server()
    try:
        if spec is not None:
            headers = {"Authorization": f"Bearer {token}"}
            created = await client.post("/v1/services", headers=headers, json={"yaml": spec})
            assert created.status == 201, await created.text()
        yield client
    finally:
        await client.close()


# for the tests that speak to the API over a raw socket (tests/test_hostile2_api_*.py,
# tests/test_slowbody_api_body.py): its token, their connection, their deadline
API_TOKEN = "c" * 40
DEADLINE = 20.0  # for what must happen soon; never asserted as a duration
Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
