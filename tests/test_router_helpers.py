"""Test doubles for the router tests: in-process replicas on 127.0.0.1 and fixtures.

A :class:`FakeReplica` is an aiohttp server whose behaviour a test sets as an
async function; it records what it received and whether the router hung up on
it (its handler is cancelled when the connection drops). No router test sleeps
for a fixed time: ``tests.helpers.waiting.eventually`` waits for a condition,
bounded.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

from skyctl.clock import Clock, FakeClock
from skyctl.router import Router
from skyctl.spec import ReplicaPolicy, RouterOptions, ServiceSection
from skyctl.types import Backend, Location

Behaviour = Callable[["FakeReplica", web.BaseRequest], Awaitable[web.StreamResponse]]


async def answer_with_name(replica: FakeReplica, request: web.BaseRequest) -> web.StreamResponse:
    await request.read()
    return web.Response(text=f"replica-{replica.replica_id}")


@dataclass
class Seen:
    method: str
    path: str
    headers: CIMultiDict[str]
    body: bytes


@dataclass
class FakeReplica:
    replica_id: int
    location: Location = field(default_factory=lambda: Location("local", "r1", "z1"))
    accelerators: str = ""
    behaviour: Behaviour = answer_with_name
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    seen: list[Seen] = field(default_factory=list)
    hung_up: int = 0  # handlers cancelled because the router closed the connection
    finished: int = 0
    port: int = 0
    ssl_context: ssl.SSLContext | None = None  # set: the replica serves https
    _runner: web.ServerRunner | None = None

    async def start(self) -> None:
        server = web.Server(self._handle, handler_cancellation=True, access_log=None)
        self._runner = web.ServerRunner(server, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        assert site._server is not None
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        self.seen.append(Seen(request.method, request.path_qs, CIMultiDict(request.headers), b""))
        try:
            resp = await self.behaviour(self, request)
        except asyncio.CancelledError:
            self.hung_up += 1
            raise
        self.finished += 1
        return resp

    @property
    def hits(self) -> int:
        return len(self.seen)

    @property
    def backend(self) -> Backend:
        return Backend(
            replica_id=self.replica_id,
            url=f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}",
            location=self.location,
            accelerators=self.accelerators,
        )


def refused_backend(replica_id: int, location: Location | None = None) -> Backend:
    """A backend whose port has nothing listening (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return Backend(
        replica_id, f"http://127.0.0.1:{port}", location or Location("local", "r1", "z9")
    )


class ResettingServer:
    """Accepts a connection, reads the request head, then closes without answering."""

    def __init__(self) -> None:
        self.connections = 0
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.close()
        await writer.wait_closed()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def backend(self, replica_id: int) -> Backend:
        return Backend(replica_id, f"http://127.0.0.1:{self.port}", Location("local", "r1", "z8"))


def section(
    policy: str = "least_load",
    qps: float | dict[str, float] | None = None,
    **router: Any,
) -> ServiceSection:
    replica_policy = ReplicaPolicy() if qps is None else ReplicaPolicy(target_qps_per_replica=qps)
    return ServiceSection(
        load_balancing_policy=policy,
        replica_policy=replica_policy,
        router=replace(RouterOptions(), **router),
    )


@dataclass
class Harness:
    """A router under test, its fake replicas, a client, and the clock."""

    clock: FakeClock
    client: aiohttp.ClientSession
    routers: list[Router] = field(default_factory=list)
    replicas: list[FakeReplica] = field(default_factory=list)
    others: list[ResettingServer] = field(default_factory=list)
    backend_errors: list[int] = field(default_factory=list)

    async def replica(self, replica_id: int, **kwargs: Any) -> FakeReplica:
        replica = FakeReplica(replica_id, **kwargs)
        await replica.start()
        self.replicas.append(replica)
        return replica

    async def resetting(self) -> ResettingServer:
        server = ResettingServer()
        await server.start()
        self.others.append(server)
        return server

    async def router(
        self,
        backends: list[Backend],
        sec: ServiceSection | None = None,
        clock: Clock | None = None,
        secrets: dict[str, str] | None = None,
    ) -> tuple[Router, str]:
        router = Router(
            "svc",
            sec or section(),
            clock=clock or self.clock,
            on_backend_error=lambda rid, reason: self.backend_errors.append(rid),
            secrets=secrets,
        )
        port = await router.start("127.0.0.1", None)
        self.routers.append(router)
        router.set_backends(backends)
        return router, f"{router.scheme}://127.0.0.1:{port}"


@asynccontextmanager
async def open_harness() -> AsyncIterator[Harness]:
    """A :class:`Harness` whose routers, replicas and client are closed on exit."""
    client = aiohttp.ClientSession()
    h = Harness(clock=FakeClock(), client=client)
    try:
        yield h
    finally:
        for replica in h.replicas:
            replica.gate.set()
        for router in h.routers:
            await router.stop(grace_seconds=1.0)
        for replica in h.replicas:
            await replica.stop()
        for other in h.others:
            await other.stop()
        await client.close()


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with open_harness() as h:
        yield h


def in_flight(router: Router) -> dict[int, float]:
    return {rid: s["in_flight"] for rid, s in router.replica_stats().items()}
