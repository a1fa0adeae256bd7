"""The one HTTP server behind every simulated instance (see ``providers.simulated``).

``GET|POST /i/<instance id>[/anything]`` answers 503 while the instance boots,
200 once it has booted, and 404 when there is no such instance (terminated or
preempted). Two ways to run it, same routes:

- :class:`InProcessEndpoints`: in the caller's event loop, on its clock (tests
  with a FakeClock, quick runs);
- :class:`RemoteEndpoints`: in a child process (``python -m
  providers.simulated_server``, on uvloop when installed), on real time, told
  about instances through ``PUT``/``DELETE /_admin/<instance id>``, so serving
  costs the controller's process nothing; the child exits when its parent
  closes it or dies (its stdin closes).

The server is a bare asyncio protocol (HTTP/1.1 keep-alive, pipelining,
``Content-Length`` bodies; nothing else is needed by probes and the router):
it answers ten thousand endpoints probed every few seconds on a fraction of
a core, so the controller's probes are not timed out by the simulator.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Callable
from typing import cast
from urllib.parse import parse_qs

import aiohttp

from skyctl.clock import Clock
from skyctl.errors import TransientError

MAX_HEAD = 64 * 1024  # a longer head is refused (431) and the connection closed
_REASONS = {
    200: b"OK",
    204: b"No Content",
    400: b"Bad Request",
    404: b"Not Found",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}
_BODIES = {200: b"ok\n", 404: b"no such instance\n", 503: b"booting\n", 204: b"", 400: b"bad\n"}
_BODIES[431] = b"head too large\n"


def _response(status: int, close: bool) -> bytes:
    body = _BODIES[status]
    return b"HTTP/1.1 %d %b\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n%b\r\n%b" % (
        status,
        _REASONS[status],
        len(body),
        b"Connection: close\r\n" if close else b"",
        body,
    )


class _Routes:
    """What each path answers: instances by boot deadline, and (remote) the admin routes."""

    def __init__(self, now: Callable[[], float], ready_at: dict[str, float], admin: bool) -> None:
        self.now = now
        self.ready_at = ready_at
        self.admin = admin
        self.open: set[asyncio.Transport] = set()  # closed with the server

    def answer(self, method: bytes, target: bytes) -> int:
        path, _, query = target.partition(b"?")
        if path.startswith(b"/i/"):
            iid = path[3:].split(b"/", 1)[0].decode("latin-1")
            at = self.ready_at.get(iid)
            if at is None:
                return 404
            return 503 if self.now() < at else 200
        if self.admin and path.startswith(b"/_admin/"):
            iid = path[8:].decode("latin-1")
            if method == b"PUT":
                boot = parse_qs(query.decode("latin-1")).get("boot", ["0"])[0]
                self.ready_at[iid] = self.now() + float(boot)
                return 204
            if method == b"DELETE":
                self.ready_at.pop(iid, None)
                return 204
        return 404


class _Http(asyncio.Protocol):
    """One client connection: requests in, one response each, in order."""

    def __init__(self, routes: _Routes) -> None:
        self.routes = routes
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.skip = 0  # body bytes of the current request still to discard

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.routes.open.add(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.routes.open.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        out: list[bytes] = []
        close = False
        while buf:
            if self.skip:
                n = min(self.skip, len(buf))
                self.skip -= n
                buf = buf[n:]
                continue
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    out.append(_response(431, True))
                    close, buf = True, b""
                break
            head, buf = buf[:end], buf[end + 4 :]
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ")
            if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
                out.append(_response(400, True))
                close, buf = True, b""
                break
            method, target, version = parts
            keep = version == b"HTTP/1.1"
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = value.strip()
                    self.skip = int(length) if length.isdigit() else 0
                elif name == b"connection":
                    keep = value.strip().lower() != b"close" and (
                        keep or value.strip().lower() == b"keep-alive"
                    )
            out.append(_response(self.routes.answer(method, target), not keep))
            if not keep:
                close, buf = True, b""
                break
        self.buf = buf
        if out and self.transport is not None:
            self.transport.write(b"".join(out))
            if close:
                self.transport.close()


async def _listen(routes: _Routes) -> tuple[asyncio.Server, int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Http(routes), "127.0.0.1", 0, backlog=4096)
    return server, int(server.sockets[0].getsockname()[1])


class EndpointServer(abc.ABC):
    base_url: str

    @abc.abstractmethod
    async def add(self, instance_id: str, *, boot_seconds: float) -> None: ...

    @abc.abstractmethod
    async def remove(self, instance_id: str) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...


class InProcessEndpoints(EndpointServer):
    def __init__(self, clock: Clock, server: asyncio.Server, port: int, routes: _Routes):
        self._clock = clock
        self._server = server
        self._routes = routes
        self._ready_at = routes.ready_at
        self.base_url = f"http://127.0.0.1:{port}"

    @classmethod
    async def start(cls, clock: Clock) -> InProcessEndpoints:
        routes = _Routes(clock.now, {}, admin=False)
        server, port = await _listen(routes)
        return cls(clock, server, port, routes)

    async def add(self, instance_id: str, *, boot_seconds: float) -> None:
        self._ready_at[instance_id] = self._clock.now() + boot_seconds

    async def remove(self, instance_id: str) -> None:
        self._ready_at.pop(instance_id, None)

    async def close(self) -> None:
        self._server.close()
        for transport in list(self._routes.open):  # kept-alive connections too
            transport.close()
        await self._server.wait_closed()


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
    server, port = await _listen(_Routes(time.monotonic, ready_at, admin=True))
    print(port, flush=True)
    loop = asyncio.get_running_loop()
    closed = loop.create_future()

    def stdin_readable() -> None:
        if not closed.done():
            closed.set_result(None)

    loop.add_reader(sys.stdin.fileno(), stdin_readable)
    await closed  # stdin readable: closed (EOF) by the parent, or the parent died
    server.close()


if __name__ == "__main__":
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(_serve())
