"""Lingering close: end a client connection without a reset that loses the answer.

When the router answers before it read the whole request (a 413 for a
Content-Length over the limit, a 400 for a broken chunk, a 401 or a replica's
early answer while the body still arrives), closing the socket with bytes
unread makes the kernel send a TCP RST; a client still sending its body (many
send it all before they read) may then lose the answer it had not read yet.
As nginx's ``lingering_close``, :class:`Linger` takes the connection over
instead: it half-closes (the answer, then FIN: the client sees the end), reads
and drops what the client still sends, and closes once the client closes too,
or at a bound a hostile client cannot stretch: ``linger_idle`` seconds
without a byte (nginx's ``lingering_timeout``, 5 s), ``linger_time`` in all
(nginx's ``lingering_time``, 30 s), ``linger_bytes`` dropped (64 MiB); the
bounds are :class:`~skyctl.router.listener.FrontServer` attributes. The
connection counts towards the connection limits until it is closed. Over TLS
(no half-close) it reads and drops the same way, then closes.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from skyctl.router.front import Connection


class Linger:
    """The protocol of a client connection being closed gracefully (module docstring)."""

    def __init__(self, conn: Connection, transport: asyncio.Transport) -> None:
        server = conn._server
        self._conn = conn
        self._transport = transport
        self._loop = server.loop
        self._idle = server.linger_idle
        now = self._loop.time()
        self._end = now + server.linger_time
        self._last = now
        self._left = server.linger_bytes
        transport.set_protocol(cast(asyncio.BaseProtocol, self))
        if transport.can_write_eof():
            transport.write_eof()  # after what is buffered: the answer, then FIN
        transport.resume_reading()
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(self._idle, self._check)

    def data_received(self, data: bytes) -> None:
        self._last = self._loop.time()
        self._left -= len(data)
        if self._left < 0:
            self._cut()

    def eof_received(self) -> bool | None:
        return None  # the client is done: the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self._conn.connection_lost(exc)

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass

    def _check(self) -> None:
        self._timer = None
        now = self._loop.time()
        wake = min(self._last + self._idle, self._end)
        if now >= wake:
            self._cut()
        else:
            self._timer = self._loop.call_later(wake - now, self._check)

    def _cut(self) -> None:
        self._transport.abort()
