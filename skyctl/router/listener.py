"""The listening side of the router's front: sockets, limits, the timeout sweep.

:class:`FrontServer` accepts client connections (plain or TLS) and runs a
:class:`~skyctl.router.front.Connection` protocol for each; its attributes
are the limits and timeouts every connection reads (they may change while it
runs: call :meth:`FrontServer.rearm` after changing a timeout). One timer
sweeps all connections for slow heads, stalled or too slow bodies and idle keep-alive.

A body is cut (408) after ``body_timeout`` seconds of silence, and also once it
has been arriving for longer than ``body_timeout`` plus one second per
``body_min_rate`` bytes received (Apache's mod_reqtimeout ``MinRate``): a
client trickling a byte every few seconds no longer holds its connection (and
the replica's it streams to) for ever, while an upload that keeps up that rate,
however large and long, goes through. Time the router itself paused reading
(back-pressure) counts for neither.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Callable
from typing import Any, cast

from skyctl.router.batch import WriteBatch
from skyctl.router.front import Connection
from skyctl.router.http1 import MAX_FIELDS, MAX_HEAD_BYTES, Head, ProtocolError
from skyctl.router.request import FastHandler, Handler, Request

# "1": SO_REUSEPORT on every listening socket, set by a router process that is
# one of several workers sharing each endpoint's port (config.yaml router.workers)
REUSE_PORT_ENV = "SKYCTL_ROUTER_REUSE_PORT"


class TLSProtocol:
    """TLS over an accepted connection, counted first towards the limits: a server
    made with ``ssl=`` calls its protocol only once the handshake is done, leaving
    connections that never finish one uncounted for the handshake timeout (one
    client could take every file descriptor). As that server does, the loop's own
    SSLProtocol (uvloop's, else asyncio's) takes the raw transport before it
    starts reading, and calls ``connection_made`` again with the TLS transport."""

    def __init__(self, server: FrontServer) -> None:
        self.server = server
        if type(server.loop).__module__.startswith("uvloop"):
            from uvloop.loop import SSLProtocol  # type: ignore[attr-defined]
        else:
            from asyncio.sslproto import SSLProtocol
        self.make: Callable[..., Any] = SSLProtocol

    def wrap(self, conn: Connection, transport: asyncio.Transport) -> asyncio.Future[None]:
        """Start the handshake; the future is done when it is (its error if it failed)."""
        server = self.server
        waiter: asyncio.Future[None] = server.loop.create_future()
        protocol = self.make(
            server.loop,
            conn,
            server.ssl_context,
            waiter,
            server_side=True,
            server_hostname=None,
            ssl_handshake_timeout=server.head_timeout,
        )
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        return waiter


class FrontServer:
    """Listens and runs :class:`Connection` protocols (see the module docstring)."""

    def __init__(
        self,
        handler: Handler,
        *,
        keepalive_timeout: float = 75.0,
        head_timeout: float = 30.0,
        body_timeout: float = 60.0,
        body_min_rate: float = 1024.0,
        send_timeout: float = 120.0,
        max_head_bytes: int = MAX_HEAD_BYTES,
        max_headers: int = MAX_FIELDS,
        max_body_bytes: int = 64 << 20,
        max_connections: int = 1024,
        max_connections_per_client: int = 256,
        ssl_context: ssl.SSLContext | None = None,
        fast: FastHandler | None = None,
    ) -> None:
        """Timeouts in seconds; limits as in the module docstring (they may be changed live).

        ``fast``: offered every request first; the exchange it returns answers
        it without a task (None: ``handler`` runs in a task).
        """
        self.handler = handler
        self.fast = fast
        self.keepalive_timeout = keepalive_timeout
        self.head_timeout = head_timeout
        self.body_timeout = body_timeout
        self.body_min_rate = body_min_rate  # bytes/s a body must average (0: no minimum)
        # bodies being received: their request, and when it began (moved on while paused)
        self._bodies: dict[Connection, tuple[Request, float]] = {}
        self._swept_at = 0.0
        # a client accepting no byte of its response this long is cut (nginx's send_timeout):
        # it would hold its request, and its replica's, for ever
        self.send_timeout = send_timeout
        self.max_head_bytes = max_head_bytes
        # a lingering close (linger.py): nginx's lingering_timeout and _time, and bytes dropped
        self.linger_idle, self.linger_time, self.linger_bytes = 5.0, 30.0, 64 << 20
        self.heads: dict[bytes, Head] = {}  # request heads parsed, by their bytes
        self.head_misses = 0  # heads parsed since the last hit (headcache.py)
        self._max_headers = max_headers
        self.max_body_bytes = max_body_bytes
        self.max_connections = max_connections
        self.max_connections_per_client = max_connections_per_client
        self.per_client: dict[bytes, int] = {}  # open connections by client address
        self.ssl_context = ssl_context
        self.tls: TLSProtocol | None = None  # set by start() with ssl_context
        self.connections: set[Connection] = set()
        self.draining = False
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self.loop = asyncio.get_running_loop()  # created inside the event loop it serves
        self.batch = WriteBatch(self.loop)  # responses go out at the end of each iteration

    @property
    def max_headers(self) -> int:
        return self._max_headers

    @max_headers.setter
    def max_headers(self, value: int) -> None:
        if value != self._max_headers:
            self.heads.clear()  # parsed under the old limit
        self._max_headers = value

    async def start(self, host: str, port: int) -> int:
        self.loop = asyncio.get_running_loop()
        self.draining = False
        self.tls = None if self.ssl_context is None else TLSProtocol(self)  # (not ssl=)
        self._server = await self.loop.create_server(
            cast(Callable[[], asyncio.Protocol], lambda: Connection(self)),
            host,
            port,
            reuse_address=True,
            reuse_port=os.environ.get(REUSE_PORT_ENV) == "1" or None,
            backlog=1024,
        )
        self.rearm()
        # Any: uvloop's Server.sockets is a list where asyncio's is a tuple (compiled
        # code would check the type the stubs name)
        server: Any = self._server
        return int(server.sockets[0].getsockname()[1])

    def rearm(self) -> None:
        """Restart the timeout sweep (after the timeouts changed); only while it runs."""
        running = self._server is not None or self._sweeper is not None
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if running:
            self._sweeper = self.loop.call_later(self._sweep_interval(), self._sweep)

    @property
    def listening(self) -> bool:
        return self._server is not None

    def stop_accepting(self) -> None:
        """Close the listening socket and idle connections; busy ones close after their response."""
        self.draining = True
        if self._server is not None:
            self._server.close()
            self._server = None
        for conn in list(self.connections):
            if not conn.busy:
                conn.close()

    async def close(self) -> None:
        """Cut every connection, cancel the requests still running and wait for them
        (an exchange's tasks are cancelled by its connection's loss)."""
        self.stop_accepting()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        tasks = [c.task for c in self.connections if c.task is not None]
        for conn in self.connections:
            if conn.exchange is not None:
                tasks += conn.exchange.tasks()
        for conn in list(self.connections):
            conn.abort()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        await asyncio.sleep(0)  # let the transports run connection_lost

    def forget(self, conn: Connection) -> None:
        """``conn`` is no longer open: out of the counts (once)."""
        if conn in self.connections:
            self.connections.discard(conn)
            remote = conn.remote
            if remote is not None:
                left = self.per_client.get(remote, 1) - 1
                if left > 0:
                    self.per_client[remote] = left
                else:
                    self.per_client.pop(remote, None)

    def _sweep_interval(self) -> float:
        shortest = min(
            self.keepalive_timeout, self.head_timeout, self.body_timeout, self.send_timeout
        )
        return max(0.05, min(shortest / 4, 5.0))

    def _sweep(self) -> None:
        now = self.loop.time()
        elapsed, self._swept_at = now - self._swept_at, now
        seen, self._bodies = self._bodies, {}
        for conn in list(self.connections):
            _timed_out(
                conn, now, conn._receiving is not None and self._slow(conn, now, elapsed, seen)
            )
        self._sweeper = self.loop.call_later(self._sweep_interval(), self._sweep)

    def _slow(
        self,
        conn: Connection,
        now: float,
        elapsed: float,
        seen: dict[Connection, tuple[Request, float]],
    ) -> bool:
        """Whether ``conn``'s body arrives below ``body_min_rate`` (module docstring)."""
        request, framer = conn._receiving, conn._framer
        if request is None or framer is None or self.body_min_rate <= 0:
            return False
        before = seen.get(conn)
        began = now if before is None or before[0] is not request else before[1]
        if conn._reading_paused:
            began = min(now, began + elapsed)  # our pause, not the client's slowness
        self._bodies[conn] = (request, began)
        head = request.head
        got = framer.received(None if head.chunked else head.content_length)
        return now - began > self.body_timeout + got / self.body_min_rate


def _timed_out(conn: Connection, now: float, slow: bool) -> None:
    """The sweep's look at one connection: cut a head or a body that arrives too
    slowly (408; ``slow``: its body below the minimum rate), a client that has
    accepted no byte for the send timeout, close one idle past the keep-alive timeout."""
    server = conn._server
    if conn._write_paused and now - conn._paused_at > server.send_timeout:
        conn.abort()  # its request, and its replica's connection, end with it
        return
    request = conn._receiving
    if request is not None and request.body is not None:
        if not conn._reading_paused and (slow or now - conn._body_active > server.body_timeout):
            exc = ProtocolError(408, "request body too slow" if slow else "request body timed out")
            request.body.fail(exc)
            conn._framer = conn._receiving = None
            conn._reject(exc)  # answered by the handler if it is reading the body
        return
    if conn.busy:
        return
    if conn._head_since is not None:
        if now - conn._head_since > server.head_timeout:
            conn._reject(ProtocolError(408, "request head timed out"))
    elif now - conn.last_active > server.keepalive_timeout:
        conn.close()
