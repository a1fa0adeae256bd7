"""The one HTTP server behind every simulated instance (see ``providers.simulated``).

``GET|POST /i/<instance id>[/anything]`` answers 503 while the instance boots,
200 once it has booted, and 404 when there is no such instance (terminated or
preempted). Two ways to run it, same routes:

- :class:`InProcessEndpoints`: in the caller's event loop, on its clock (tests
  with a FakeClock, quick runs);
- :class:`RemoteEndpoints`: in a child process (``python -m
  providers.simulated_server``), on real time, told about instances through
  ``PUT``/``DELETE /_admin/<instance id>``, so serving costs the controller's
  process nothing; the child exits when its parent closes it or dies (its
  stdin closes).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Callable

import aiohttp
from aiohttp import web

from skyctl.clock import Clock
from skyctl.errors import TransientError


def _app(now: Callable[[], float], ready_at: dict[str, float], admin: bool) -> web.Application:
    async def instance(request: web.Request) -> web.Response:
        at = ready_at.get(request.match_info["iid"])
        if at is None:
            return web.Response(status=404, text="no such instance\n")
        if now() < at:
            return web.Response(status=503, text="booting\n")
        return web.Response(status=200, text="ok\n")

    async def put(request: web.Request) -> web.Response:
        ready_at[request.match_info["iid"]] = now() + float(request.query.get("boot", "0"))
        return web.Response(status=204)

    async def delete(request: web.Request) -> web.Response:
        ready_at.pop(request.match_info["iid"], None)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_route("*", "/i/{iid}", instance)
    app.router.add_route("*", "/i/{iid}/{tail:.*}", instance)
    if admin:
        app.router.add_put("/_admin/{iid}", put)
        app.router.add_delete("/_admin/{iid}", delete)
    return app


async def _listen(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    return runner, int(runner.addresses[0][1])


class EndpointServer(abc.ABC):
    base_url: str

    @abc.abstractmethod
    async def add(self, instance_id: str, *, boot_seconds: float) -> None: ...

    @abc.abstractmethod
    async def remove(self, instance_id: str) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...


class InProcessEndpoints(EndpointServer):
    def __init__(self, clock: Clock, runner: web.AppRunner, port: int, ready_at: dict[str, float]):
        self._clock = clock
        self._runner = runner
        self._ready_at = ready_at
        self.base_url = f"http://127.0.0.1:{port}"

    @classmethod
    async def start(cls, clock: Clock) -> InProcessEndpoints:
        ready_at: dict[str, float] = {}
        runner, port = await _listen(_app(clock.now, ready_at, admin=False))
        return cls(clock, runner, port, ready_at)

    async def add(self, instance_id: str, *, boot_seconds: float) -> None:
        self._ready_at[instance_id] = self._clock.now() + boot_seconds

    async def remove(self, instance_id: str) -> None:
        self._ready_at.pop(instance_id, None)

    async def close(self) -> None:
        await self._runner.cleanup()


class RemoteEndpoints(EndpointServer):
    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self._proc = proc
        self.base_url = f"http://127.0.0.1:{port}"
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=128), timeout=aiohttp.ClientTimeout(total=60)
        )

    @classmethod
    async def start(cls) -> RemoteEndpoints:
        def spawn() -> tuple[subprocess.Popen[bytes], int]:
            proc = subprocess.Popen(
                [sys.executable, "-m", "providers.simulated_server"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            assert proc.stdout is not None
            line = proc.stdout.readline().decode().strip()
            if not line.isdigit():
                proc.kill()
                proc.wait()
                raise OSError(f"simulated endpoint server did not start: {line!r}")
            return proc, int(line)

        proc, port = await asyncio.to_thread(spawn)  # a spawn is blocking work
        return cls(proc, port)

    async def add(self, instance_id: str, *, boot_seconds: float) -> None:
        url = f"{self.base_url}/_admin/{instance_id}"
        await self._admin("PUT", url, {"boot": str(boot_seconds)})

    async def remove(self, instance_id: str) -> None:
        await self._admin("DELETE", f"{self.base_url}/_admin/{instance_id}", {})

    async def _admin(self, method: str, url: str, params: dict[str, str]) -> None:
        """One admin request; a failure is a TransientError (the caller retries)."""
        try:
            async with self._session.request(method, url, params=params) as resp:
                resp.raise_for_status()
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise TransientError(
                f"simulated endpoint server: {method} failed: {type(e).__name__} {e}"
            ) from None

    async def close(self) -> None:
        await self._session.close()
        proc = self._proc
        if proc.stdin is not None:
            proc.stdin.close()  # the child exits when its stdin closes
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(proc.wait, 10)
        if proc.poll() is None:
            proc.kill()
            await asyncio.to_thread(proc.wait)


async def _serve() -> None:
    ready_at: dict[str, float] = {}
    runner, port = await _listen(_app(time.monotonic, ready_at, admin=True))
    print(port, flush=True)
    loop = asyncio.get_running_loop()
    closed = loop.create_future()

    def stdin_readable() -> None:
        if not closed.done():
            closed.set_result(None)

    loop.add_reader(sys.stdin.fileno(), stdin_readable)
    await closed  # stdin readable: closed (EOF) by the parent, or the parent died
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(_serve())
