"""An aiohttp listener no client holds connections on for ever (the controller's API,
the router process's health port).

aiohttp takes every connection and (before 3.14.x) waits for a request head
without end, so a process that opened thousands of connections sending
nothing, or a head a byte at a time, held the server's file descriptors (the
controller's store, launches, readiness probes and embedded routers need them;
a router process's, its clients') before any token was checked. Here:

- at most ``MAX_CONNECTIONS`` are open: one more is answered with a one-line
  JSON 503 and closed (the listener refuses; the process goes on);
- a connection whose first request has not arrived ``HEAD_SECONDS`` after it
  opened is closed, and one idle as long between requests (aiohttp's
  keep-alive timeout). A request being answered (``logs -f``, the console's
  event stream) is never cut;
- a request body (its handler waits for it, after the token is checked) is read
  by :func:`read_body`: a ``Content-Length`` over the limit is a 413 at once, a
  body not all arrived ``BODY_SECONDS`` after its head (none sent, one trickled
  a byte at a time, chunks without the last) a 408; either closes the
  connection. aiohttp waited for it without end, so one authenticated client
  held a handler (and a connection) for ever;
- a request aiohttp cannot parse (the client gets its 400) is one log line a
  minute at most, counting the others: aiohttp logged a traceback for each
  (some 500 bytes a request of 30, so a loop of them filled the disk with
  ``controller.log``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

HEAD_SECONDS = 30.0
BODY_SECONDS = 30.0  # for a whole request body (the controller's are 1 MiB at most)
LINGER_SECONDS = 10.0  # aiohttp's: unread body bytes drained this long after an answer
MAX_CONNECTIONS = 256
MALFORMED_EVERY = 60.0  # seconds between log lines about malformed requests


class _Guarded(asyncio.Protocol):
    """An aiohttp request handler, closed unless a request arrives in time."""

    def __init__(self, site: GuardedSite, inner: asyncio.Protocol) -> None:
        self.site = site
        self.inner = inner
        self.started = False  # set by `started` when a request reaches the app
        self.transport: asyncio.BaseTransport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.site.open.add(self)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.site.head_seconds, self._expire)
        self.inner.connection_made(transport)

    def _expire(self) -> None:
        if not self.started and self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.site.open.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        self.inner.connection_lost(exc)


class _Refused(asyncio.Protocol):
    def __init__(self, what: str) -> None:
        body = json.dumps({"error": f"too many connections to {what}", "exit_code": 1})
        self.reply = (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}"
        ).encode()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).write(self.reply)
        transport.close()


@web.middleware
async def started(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Mark the connection as having sent a request (its head deadline no longer applies)."""
    transport = request.transport
    protocol = transport.get_protocol() if transport is not None else None
    if isinstance(protocol, _Guarded):
        protocol.started = True
    return await handler(request)


async def read_body(request: web.Request, max_bytes: int, seconds: float) -> None:
    """Read ``request``'s body, if it has one (aiohttp keeps it for ``read()`` and
    ``json()``): HTTPRequestEntityTooLarge for a Content-Length over ``max_bytes``
    without reading a byte (or once the chunks pass it), HTTPRequestTimeout when it
    is not complete within ``seconds``; both close the connection."""
    if not request.body_exists:
        return
    length = request.content_length
    try:
        if length is not None and length > max_bytes:
            raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=length)
        try:
            async with asyncio.timeout(seconds):
                await request.read()
        except TimeoutError:
            raise web.HTTPRequestTimeout(
                reason=f"request body not complete within {seconds:g} s"
            ) from None
    except web.HTTPException as e:
        e.force_close()  # what remains of the body cannot be parsed as the next request
        raise


class MalformedLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server log, with requests it could not parse counted, not each logged."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        super().__init__(logging.getLogger(__name__))
        self.now = now
        self.quiet = 0  # malformed requests since the last line
        self._next_at = -float("inf")

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        error = kwargs.get("exc_info")
        if not isinstance(error, HttpProcessingError):
            super().log(level, msg, *args, **kwargs)
            return
        now = self.now()
        if now < self._next_at:
            self.quiet += 1
            return
        why = (error.message.strip().splitlines() or ["?"])[0].rstrip(":")[:120]
        more = f" ({self.quiet} more since the last line)" if self.quiet else ""
        self.logger.warning("malformed request refused with a 400: %s%s", why, more)
        self.quiet, self._next_at = 0, now + MALFORMED_EVERY

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return msg, kwargs


def make_runner(
    app: web.Application,
    *,
    head_seconds: float = HEAD_SECONDS,
    linger_seconds: float = LINGER_SECONDS,
    log: MalformedLog | None = None,
) -> web.AppRunner:
    """The runner: idle keep-alive connections closed after ``head_seconds``, a body
    left unread drained for at most ``linger_seconds`` after the answer (then the
    connection closes), malformed requests logged by ``log``; marks connections
    that sent a request."""
    if started not in app.middlewares:
        app.middlewares.insert(0, started)
    return web.AppRunner(
        app,
        access_log=None,
        keepalive_timeout=head_seconds,
        lingering_time=linger_seconds,
        logger=log or MalformedLog(),
    )


class GuardedSite(web.BaseSite):
    """A TCP site on ``host:port`` (0: any free port) with the limits above;
    ``what`` names it in the 503 (``too many connections to WHAT``)."""

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        *,
        what: str,
        limit: int = MAX_CONNECTIONS,
        head_seconds: float = HEAD_SECONDS,
        reuse_port: bool | None = None,
    ) -> None:
        super().__init__(runner)
        self.host, self.port, self.limit, self.head_seconds = host, port, limit, head_seconds
        self.what, self.reuse_port = what, reuse_port
        self.open: set[_Guarded] = set()

    @property
    def name(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _protocol(self) -> asyncio.Protocol:
        server: Any = self._runner.server
        if len(self.open) >= self.limit:
            return _Refused(self.what)
        return _Guarded(self, server())

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, self.host, self.port, reuse_port=self.reuse_port
        )
