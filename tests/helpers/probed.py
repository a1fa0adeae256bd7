"""A local HTTP server standing in for a probed replica (tests of the prober)."""

from __future__ import annotations

import asyncio

from aiohttp import web


class ProbedServer:
    """A replica that answers probes: ``status`` (200), or hangs while ``block``;
    records each request (method, path, headers, body) and its connection."""

    def __init__(self) -> None:
        self.status = 200
        self.seen: list[tuple[str, str, dict[str, str], str]] = []
        self.peers: list[object] = []  # the client end of each request's connection
        self.hang = asyncio.Event()
        self.block = False
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.seen.append((request.method, request.path, dict(request.headers), body))
        self.peers.append(
            request.transport.get_extra_info("peername") if request.transport else None
        )
        if self.block:
            await self.hang.wait()
        return web.Response(status=self.status, text="x")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
