"""WebSocket through the router: an Upgrade goes to one replica, then a byte tunnel.

With ``service.auth`` the upgrade needs the key like any request; a fan_out or
hedge service sends it to one replica only; while open it counts in that
replica's load; a replica declining the upgrade has its answer passed on;
stopping the router closes open tunnels.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest
from aiohttp import web

from skyctl.spec import Auth
from tests.helpers.waiting import eventually
from tests.test_router_helpers import FakeReplica, Harness, open_harness, section

KEY = "k-websocket-test"


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with open_harness() as harness:
        yield harness


async def ws_echo(replica: FakeReplica, request: web.BaseRequest) -> web.StreamResponse:
    """Echo text frames prefixed with the replica's id; a plain GET gets 426."""
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return web.json_response({"error": "upgrade required"}, status=426)
    ws = web.WebSocketResponse()
    await ws.prepare(request)  # type: ignore[arg-type]
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.TEXT:
            await ws.send_str(f"{replica.replica_id}:{msg.data}")
    return ws


def authed(policy: str = "least_load") -> object:
    return replace(section(policy), auth=Auth(api_key_secrets=("K",)))


@pytest.mark.parametrize("policy", ["least_load", "fan_out", "hedge"])
async def test_a_websocket_echoes_through_the_router_with_auth_on_one_replica(
    h: Harness, policy: str
) -> None:
    replicas = [await h.replica(i, behaviour=ws_echo) for i in (1, 2)]
    router, url = await h.router(
        [r.backend for r in replicas],
        authed(policy),
        secrets={"K": KEY},  # type: ignore[arg-type]
    )
    headers = {"Authorization": f"Bearer {KEY}"}
    async with h.client.ws_connect(url + "/ws", headers=headers) as ws:
        await ws.send_str("hello")
        first = await asyncio.wait_for(ws.receive_str(), 5)
        await ws.send_str("again")
        second = await asyncio.wait_for(ws.receive_str(), 5)
        rid = first.split(":")[0]
        assert first == f"{rid}:hello" and second == f"{rid}:again"
        # one replica holds it, and it counts in that replica's load
        assert sum(r.hits for r in replicas) == 1
        stats = router.replica_stats()
        assert stats[int(rid)]["in_flight"] == 1.0
    await eventually(lambda: router.replica_stats()[int(rid)]["in_flight"] == 0.0, "released")


async def test_a_websocket_without_the_key_gets_401_and_reaches_no_replica(h: Harness) -> None:
    replica = await h.replica(1, behaviour=ws_echo)
    _, url = await h.router([replica.backend], authed(), secrets={"K": KEY})  # type: ignore[arg-type]
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await h.client.ws_connect(url + "/ws")
    assert info.value.status == 401 and replica.hits == 0


async def test_a_replica_declining_the_upgrade_has_its_answer_passed_on(h: Harness) -> None:
    replica = await h.replica(1)  # answers every request with JSON, never 101
    _, url = await h.router([replica.backend])
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await h.client.ws_connect(url + "/ws")
    assert info.value.status == 200 and replica.hits == 1


async def test_least_load_counts_an_open_websocket(h: Harness) -> None:
    replicas = [await h.replica(i, behaviour=ws_echo) for i in (1, 2)]
    router, url = await h.router([r.backend for r in replicas])
    async with h.client.ws_connect(url + "/ws") as ws:
        await ws.send_str("x")
        held = int((await asyncio.wait_for(ws.receive_str(), 5)).split(":")[0])
        for _ in range(4):  # plain requests go to the other replica
            async with h.client.get(url + "/") as resp:
                assert resp.status == 426
        other = next(r for r in replicas if r.replica_id != held)
        assert other.hits == 4
    assert router.replica_stats()[held]["requests"] == 1.0


async def test_stopping_the_router_closes_an_open_websocket(h: Harness) -> None:
    replica = await h.replica(1, behaviour=ws_echo)
    router, url = await h.router([replica.backend])
    ws = await h.client.ws_connect(url + "/ws")
    await ws.send_str("x")
    assert await asyncio.wait_for(ws.receive_str(), 5) == "1:x"
    await router.stop(grace_seconds=0.2)
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR)
    await ws.close()
