"""The router's front: a lean HTTP/1.1 server on an asyncio Protocol.

:class:`~skyctl.router.listener.FrontServer` listens; each client connection is a
:class:`Connection` protocol that parses requests (:mod:`skyctl.router.http1`) and
answers them one at a time: through the server's ``fast`` hook (an :class:`Exchange`
driven by callbacks, which calls :meth:`Connection.exchange_done`), else ``await
handler(request, connection)`` in a task. Answers go out by :meth:`Connection.send`
(head and body in one write), or :meth:`~Connection.start`, :meth:`~Connection.write`,
:meth:`~Connection.finish` streamed (:meth:`~Connection.drain`, :meth:`~Connection.abort`).

- Keep-alive, pipelining (one request parsed ahead), ``Expect: 100-continue`` answered at
  the body's first read, a replica's 1xx passed on; a hang-up cancels the request.
- Malformed requests get the parser's status (400, 431, 501, 505), a body over
  ``max_body_bytes`` 413 (at once for its Content-Length), a head or body too slow
  (``head_timeout``, ``body_timeout``) 408, then the connection closes, as it does after
  a body left unread; an answer given while the client may still send closes
  gracefully (:mod:`skyctl.router.linger`). A client accepting no byte for
  ``send_timeout`` is cut; idle connections close after ``keepalive_timeout``; beyond
  ``max_connections`` (or ``max_connections_per_client``) a new one gets 503 (TLS: the listener).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any, Final, cast

from skyctl.router.headcache import LOOKUPS, PAUSE, remember
from skyctl.router.http1 import (
    LAST_CHUNK,
    REASONS,
    BodyStream,
    Framer,
    ProtocolError,
    encode_chunk,
    parse_request_head,
)
from skyctl.router.linger import Linger
from skyctl.router.request import Exchange, Request

if TYPE_CHECKING:
    from skyctl.router.listener import FrontServer

log = logging.getLogger(__name__)

_SMALL_BODY: Final = 16 * 1024  # bodies up to this size go out in the same write as the head
_IDLE: Final = 0
_STREAMING: Final = 1
_DONE: Final = 2
# made once, not formatted per response (a %-format parses its template each time)
_DIGITS: Final = tuple(b"%d" % n for n in range(1000))  # a status code's
_LENGTHS: Final = tuple(b"Content-Length: %d\r\n" % n for n in range(1024))  # small bodies'


class Connection:
    """One client connection (see the module docstring); an asyncio protocol by its
    methods, not by inheritance (so it compiles to a native class)."""

    def __init__(self, server: FrontServer) -> None:
        self._server = server
        self._loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.remote: bytes | None = None
        self.closed = False
        self.last_active = self._loop.time()
        self._buf = b""
        self._receiving: Request | None = None  # request whose body is still arriving
        # after an Upgrade request: the bytes that followed its head (nothing more is
        # parsed as HTTP/1.1; reading pauses until a tunnel takes the connection)
        self.upgraded: bytes | None = None
        self._framer: Framer | None = None
        self._current: Request | None = None  # handed to the task
        self._ready: Request | None = None  # parsed ahead, waiting
        self.task: asyncio.Task[None] | None = None  # the handler of _current, or
        self.exchange: Exchange | None = None  # the callbacks answering it
        self._backlog_paused = False
        self._reading_paused = False
        self._head_since: float | None = None  # when the head being received began
        self._body_active = 0.0  # when the body being received last had bytes
        self._write_paused = False
        self._paused_at = 0.0
        self._drain_waiter: asyncio.Future[None] | None = None
        # the response to _current
        self._state = _IDLE
        self._chunked = False
        self._close_after = False
        self._head_only = False
        self._http11 = True
        self._writer = self._write_now  # bound once, not per response
        self._handshake: asyncio.Future[None] | None = None  # TLS, until it is done
        self.unread = False  # the client may still be sending: close by lingering

    # ---- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._handshake is not None:  # TLS: the handshake is done, this is its transport
            self.transport = cast(asyncio.Transport, transport)
            return
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        server = self._server
        if len(server.connections) >= server.max_connections:
            self._refuse(b"too many connections")
            return
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            remote = self.remote = str(peer[0]).encode("ascii", "replace")
            per_client = server.per_client
            count = per_client.get(remote, 0)
            if count >= server.max_connections_per_client:  # one client cannot take them all
                self._refuse(b"too many connections from this client")
                return
            per_client[remote] = count + 1
        server.connections.add(self)
        if server.tls is not None:  # counted above, before its handshake (listener.py)
            self._handshake = server.tls.wrap(self, self.transport)
            self._handshake.add_done_callback(self._handshake_done)

    def _refuse(self, why: bytes) -> None:
        """Over a limit: 503 and close (TLS, before the handshake: just close)."""
        if self._server.ssl_context is None:
            self._close_after = True
            self.send_json(503, {"error": why.decode()})
        self.close()  # stops reading at once (no lingering: no slot held)

    def _handshake_done(self, waiter: asyncio.Future[None]) -> None:
        self._handshake = None
        if waiter.cancelled() or waiter.exception() is not None:  # failed, timed out, cut
            self.closed = True
            self._server.forget(self)

    def data_received(self, data: bytes) -> None:
        framer = self._framer
        if framer is not None:
            request = self._receiving
            assert request is not None and request.body is not None
            try:
                rest = framer.feed(data, request.body)
            except ProtocolError as exc:  # a broken body: nothing after it can be trusted
                request.body.fail(exc)
                self._framer = self._receiving = None
                self._close_after = self.unread = True
                self._pause_reading()
                return
            if rest is None:
                self._body_active = self._loop.time()
                return
            request.body.finish()
            self._framer = self._receiving = None
            data = rest
            if not data:
                return
        if self._buf:
            data, self._buf = self._buf + data, b""
        self._parse(data)

    def eof_received(self) -> bool | None:
        return None  # the client half-closed: the transport closes (asyncio.Protocol default)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._server.forget(self)
        if self._receiving is not None and self._receiving.body is not None:
            self._receiving.body.fail(ConnectionResetError("client closed the connection"))
        if self._current is not None and self.task is not None:
            self.task.cancel()  # the client hung up mid-request
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.cancel()
        drain, self._drain_waiter = self._drain_waiter, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True
        self._paused_at = self._loop.time()  # for the send timeout (listener._timed_out)

    def resume_writing(self) -> None:
        self._write_paused = False
        drain, self._drain_waiter = self._drain_waiter, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    # ---- request parsing -------------------------------------------------------------------

    def _parse(self, data: bytes) -> None:
        if self.upgraded is not None:
            self.upgraded += data
            return
        while data:
            if self._ready is not None or self._receiving is not None:
                self._buf = data  # one request ahead is enough: wait for the handler
                if len(data) > self._server.max_head_bytes and not self._backlog_paused:
                    self._backlog_paused = True
                    self._pause_reading()
                return
            if data[0] == 13 or data[0] == 10:  # CR, LF
                data = data.lstrip(b"\r\n")  # empty lines between requests are allowed
                if not data:
                    return
            server = self._server
            end = data.find(b"\r\n\r\n")
            if end < 0 or end > server.max_head_bytes:
                if len(data) > server.max_head_bytes:
                    self._reject(ProtocolError(431, "request head too large"))
                elif data.count(b"\n") != data.count(b"\r\n"):  # refused now, as llhttp
                    self._reject(ProtocolError(400, "bare LF in the request head"))
                elif data:
                    self._buf = data
                    if self._head_since is None:
                        self._head_since = self._loop.time()
                return
            self._head_since = None
            misses = server.head_misses  # heads parsed since the cache's last hit
            if misses < LOOKUPS:  # a head seen before (headcache.py)
                key = data if len(data) == end + 4 else data[: end + 4]
                head = server.heads.get(key)
            else:
                key, head = b"", None
            if head is None:
                try:
                    # (server._max_headers: the max_headers property without its call)
                    head = parse_request_head(data[: end + 2], server._max_headers)
                except ProtocolError as exc:
                    self._reject(exc)
                    return
                if key:
                    remember(server.heads, key, head)
                server.head_misses = misses + 1 if misses < LOOKUPS + PAUSE else 0
            elif misses:
                server.head_misses = 0
            if head.content_length is not None and head.content_length > server.max_body_bytes:
                self._reject(ProtocolError(413, f"request body over {server.max_body_bytes} bytes"))
                return
            data = data[end + 4 :]
            request = Request(head, self.remote)
            if head.upgrade:  # as llhttp: what follows the head is the new protocol's
                self.upgraded = data
                self._pause_reading()
                self._dispatch(request)
                return
            length = head.content_length  # None when chunked
            if length and len(data) >= length:  # whole with its head: bytes, no stream
                if len(data) == length:
                    request.whole, data = data, b""
                else:
                    request.whole, data = data[:length], data[length:]
            elif length or head.chunked:
                body = request.body = BodyStream(self._pause_reading, self._resume_reading)
                if head.expect_continue and head.http11:
                    body.on_first_read = self._continue
                framer = Framer(length, head.chunked, server.max_body_bytes)
                try:
                    rest = framer.feed(data, body)
                except ProtocolError as exc:
                    self._reject(exc)
                    return
                if rest is None:
                    self._framer, self._receiving = framer, request
                    self._body_active = self._loop.time()
                    data = b""
                else:
                    body.finish()
                    data = rest
            # (self._dispatch, inline: the hot path; last_active is read only when not
            # busy, and the answer sets it)
            if self._current is not None:
                self._ready = request
            else:
                self._current = request
                self._start(request)

    def _dispatch(self, request: Request) -> None:
        self.last_active = self._loop.time()
        if self._current is not None:
            self._ready = request
            return
        self._current = request
        self._start(request)

    def _start(self, request: Request) -> None:
        """Answer ``_current``: through the fast hook's exchange, else a handler task."""
        head = request.head
        self._state = _IDLE
        self._chunked = False
        self._close_after = not head.keep_alive or self._server.draining or head.upgrade
        self._head_only = head.method == b"HEAD"
        self._http11 = head.http11
        fast = self._server.fast
        exchange = None if fast is None else fast(request, self)
        if exchange is not None:
            self.exchange = exchange
            exchange.start()
        else:
            if request.whole is not None:  # a handler reads streams
                expect = head.expect_continue and head.http11
                request.stream(self._continue if expect else None)
            self.task = self._loop.create_task(self._run(request))

    def exchange_done(self) -> None:
        """The exchange has answered ``_current``: go on with the next request."""
        self.exchange = None
        request = self._current
        if request is None or self.closed:
            return
        if self._state != _DONE or (request.body is not None and not request.body.complete):
            self._finished(request)  # the exchange left something to do
        else:
            self.last_active = self._loop.time()
        if self._close_after or self.closed or self._server.draining:  # (self._after, inline)
            self._current = None
            self.close()
            return
        if self._ready is None and not self._buf and not self._backlog_paused:
            self._current = None  # nothing parsed ahead or waiting (self._next)
            return
        request = self._next()
        if request is not None:
            self._start(request)

    def _after(self) -> None:
        """``_current`` is answered: close, or start the request parsed ahead."""
        if self._close_after or self.closed or self._server.draining:
            self._current = None
            self.close()
            return
        request = self._next()
        if request is not None:
            self._start(request)

    def _next(self) -> Request | None:
        """The request parsed ahead, if any; buffered bytes are parsed on."""
        request, self._ready = self._ready, None
        self._current = request
        if self._backlog_paused:
            self._backlog_paused = False
            self._resume_reading()
        if self._buf and self._receiving is None:
            data, self._buf = self._buf, b""
            self._parse(data)
        return request

    def _reject(self, exc: ProtocolError) -> None:
        self.unread = True  # what follows is unread: lingering close
        if self._current is not None:  # a response is under way: just stop reading
            self._close_after = True
            self._pause_reading()
            return
        body = json.dumps({"error": exc.detail}).encode()
        reason = REASONS.get(exc.status, b"Error")
        self._write_raw(
            b"HTTP/1.1 %d %b\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n%b" % (exc.status, reason, len(body), body)
        )
        self.close()

    def _continue(self) -> None:
        if self._state == _IDLE:
            self._write_raw(b"HTTP/1.1 100 Continue\r\n\r\n")

    def interim(self, status: int, reason: bytes, lines: bytes) -> None:
        """A replica's 1xx (not 101): to HTTP/1.1 clients only (RFC 9110 15.2); a 100 only
        while the client's ``Expect`` waits for one (not after the router's own)."""
        request = self._current
        if self._http11 and self._state == _IDLE and request is not None:
            body = request.body if status == 100 and request.head.expect_continue else None
            if body is None or body.on_first_read is not None:
                if body is not None:
                    body.on_first_read = None  # the replica's answers the expectation
                self._write_raw(b"HTTP/1.1 %d %b\r\n%b\r\n" % (status, reason, lines))

    def _pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self._reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.transport is not None and not self.closed and not self._backlog_paused:
            self._reading_paused = False
            self._body_active = self._loop.time()  # silence while paused was ours
            self.transport.resume_reading()

    # ---- the task: one request at a time ------------------------------------------------------

    async def _run(self, request: Request) -> None:
        try:
            await self._serve(request)
        except BaseException:
            self._current = None  # cancelled: the client hung up
            raise
        finally:
            self.task = None
        if not self.closed:
            self._after()
        else:
            self._current = None

    async def _serve(self, request: Request) -> None:
        try:
            await self._server.handler(request, self)
        except Exception as exc:
            self.fail(request, exc)
        self._finished(request)

    def fail(self, request: Request, exc: Exception) -> None:
        """Answer a request whose handling raised ``exc``: its status for a
        :class:`ProtocolError` (the request body was malformed, too large or too
        slow), else 500; a response already under way is cut."""
        self._close_after = True
        if isinstance(exc, ProtocolError):
            if self._state == _IDLE:
                self.send_json(exc.status, {"error": exc.detail})
            else:
                self.abort()
            return
        if not self.closed:
            log.error(
                "router handler failed on %s %r",
                request.method,
                request.head.target[:200],
                exc_info=exc,
            )
        if self._state == _IDLE:
            self.send_json(500, {"error": "internal router error"})
        else:
            self.abort()

    def _finished(self, request: Request) -> None:
        if self._state != _DONE:
            if self._state == _IDLE:
                self._close_after = True
                self.send_json(500, {"error": "router handler sent no response"})
            else:
                self.abort()
        if request.body is not None and not request.body.complete:
            self._close_after = self.unread = True  # the rest of the body is on the wire
        self.last_active = self._loop.time()

    # ---- responses -----------------------------------------------------------------------------

    def _head(self, status: int, reason: bytes, lines: bytes, framing: bytes) -> bytes:
        """A response head: status line, ``lines``, ``framing``, Connection, blank line."""
        return b"HTTP/1.1 %d %b\r\n%b%b%b\r\n" % (
            status,
            reason,
            lines,
            framing,
            self._connection_line(),
        )

    def _connection_line(self) -> bytes:
        if self._close_after:
            return b"Connection: close\r\n"
        return b"" if self._http11 else b"Connection: keep-alive\r\n"

    def send(
        self,
        status: int,
        reason: bytes,
        lines: bytes,
        body: bytes = b"",
        declared_length: int | None = None,
    ) -> None:
        """A complete response; ``lines`` are header lines ending in CRLF, without framing.

        ``declared_length``: the Content-Length to announce for a HEAD request.
        """
        if status < 200 or status in (204, 304):
            framing, body = b"", b""
        elif self._head_only:
            framing = b""
            if declared_length is not None:
                framing = b"Content-Length: %d\r\n" % declared_length
            body = b""
        else:
            size = len(body)
            framing = _LENGTHS[size] if size < 1024 else b"Content-Length: %d\r\n" % size
        receiving = self._receiving
        if receiving is not None and receiving is self._current:  # answered before its
            self._close_after = self.unread = True  # body came: it closes (RFC 9110 10.1.1)
        if self._close_after:  # (self._head, inline: the hot path)
            connection = b"Connection: close\r\n"
        else:
            connection = b"" if self._http11 else b"Connection: keep-alive\r\n"
        code = _DIGITS[status] if status < 1000 else b"%d" % status
        if len(body) <= _SMALL_BODY:  # head and body in one write
            self._state = _DONE
            end = b"\r\n"
            if self.transport is not None and not self.closed:  # (self._write_raw, inline)
                data = b"".join(
                    (b"HTTP/1.1 ", code, b" ", reason, end, lines, framing, connection, end, body)
                )
                self._server.batch.write(self._writer, data)
        else:
            head = b"HTTP/1.1 %d %b\r\n%b%b%b\r\n" % (status, reason, lines, framing, connection)
            self._state = _DONE
            self._write_raw(head)
            self._write_raw(body)

    def send_json(self, status: int, obj: dict[str, Any], rid: bytes | None = None) -> None:
        lines = b"Content-Type: application/json\r\n"
        if rid is not None:
            lines += b"X-Request-Id: " + rid + b"\r\n"
        self.send(status, REASONS.get(status, b"Error"), lines, json.dumps(obj).encode())

    def start(
        self, status: int, reason: bytes, lines: bytes, length: int | None, first: bytes
    ) -> None:
        """Start a streamed response with its first body bytes (one write).

        ``length`` None: chunked to an HTTP/1.1 client, else delimited by closing.
        """
        if self._head_only or status < 200 or status in (204, 304):
            self.send(status, reason, lines, b"", length)
            return
        if length is not None:
            framing = b"Content-Length: %d\r\n" % length
        elif self._http11:
            framing = b"Transfer-Encoding: chunked\r\n"
            self._chunked = True
        else:
            framing = b""
            self._close_after = True
        head = self._head(status, reason, lines, framing)
        self._state = _STREAMING
        if not first:
            self._write_raw(head)
        elif self._chunked:
            self._write_raw(head + encode_chunk(first))
        else:
            self._write_raw(head + first)

    def write(self, data: bytes) -> None:
        if data and self._state == _STREAMING:
            self._write_raw(encode_chunk(data) if self._chunked else data)

    def finish(self) -> None:
        if self._state == _STREAMING:
            if self._chunked:
                self._write_raw(LAST_CHUNK)
            self._state = _DONE

    async def drain(self) -> None:
        """Wait while the client's socket buffer is full; raise once the client is gone."""
        if self.closed:
            raise ConnectionResetError("client closed the connection")
        if self._write_paused:
            self._drain_waiter = self._loop.create_future()
            await self._drain_waiter
            if self.closed:
                raise ConnectionResetError("client closed the connection")

    def abort(self) -> None:
        """Cut the connection (a response cannot be completed)."""
        self._state = _DONE
        self._close_after = True
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            self._server.batch.flush()  # what was answered goes out first
            if self.unread and not self.closed:  # the client may still be sending
                Linger(self, transport)
            else:
                transport.close()
        self.closed = True

    def _write_raw(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self._server.batch.write(self._writer, data)

    def _write_now(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def detach(self) -> tuple[asyncio.Transport, bytes] | None:
        """Hand the connection over to a tunnel (after an Upgrade request): its
        transport, paused, and the bytes that followed the request head; None once
        the client is gone. The connection still counts as open (for the limits)
        until :meth:`tunnel_closed`."""
        if self.closed or self.transport is None:
            return None
        self._state = _DONE
        self._close_after = True
        self._write_paused = False  # the tunnel's flow control from now on, not the sweep's
        early, self.upgraded = self.upgraded or b"", b""
        return self.transport, early

    def tunnel_closed(self) -> None:
        self.closed = True
        self._server.forget(self)

    @property
    def busy(self) -> bool:
        return self._current is not None
