"""The router's HTTP/1.1 client to replicas: keep-alive pools, streamed responses.

A :class:`Pool` keeps idle connections per :class:`Origin` (LIFO, so the
warmest is reused; idle ones close after ``keepalive`` seconds, before
common servers drop them: uvicorn after 5 s). :meth:`Pool.request` sends a
request head (and a body: bytes, or a :class:`~skyctl.router.http1.BodyStream`
uploaded as it arrives) and returns a :class:`Response` once the response
head is in; its body streams through ``response.body`` as it arrives.

Interim (1xx) heads before the final one go to the listener's ``on_interim``,
if it has one; more than :data:`MAX_HEAD_BYTES` of them, or a head over it
however it arrives, is a :class:`BadResponse`.

Connection reuse: a connection returns to the pool the moment its response
has fully *arrived* (the bytes may still wait in the body buffer), provided
the request was fully sent and both sides keep the connection alive.
:meth:`Response.release` on anything not fully arrived closes the connection
at once, so a half-read response is never reused and the replica sees the
disconnect. A request cancelled while waiting closes its connection too.

Errors::

    UpstreamError
     +-- ConnectFailed   could not connect (refused, unreachable, connect timeout)
     +-- Disconnected    the connection closed or broke before the response ended
     |    +-- NotSent    a pooled connection was found broken when the request
     |                   was written: the kernel took no byte of it
     +-- BadResponse     the replica sent something that is not HTTP/1.x
     +-- ClientBodyError the client's request body failed while it was uploaded
                         (``cause``: a ProtocolError such as 408/413, or a
                         disconnect); not the replica's fault
    TimeoutError         no response head within the wait given (checked every
                         50 ms for all requests at once, see
                         :mod:`skyctl.router.deadlines`), or, while reading the
                         body, no bytes within ``read_timeout``

``UpstreamError.unsent`` is True only when no byte of the request can have
reached the replica (:class:`ConnectFailed`, :class:`NotSent`): the one case
where a non-idempotent request may be sent again elsewhere. A keep-alive
connection the replica closed (FIN) just before we wrote is *not* such a case:
the kernel accepted the bytes, and we cannot tell whether the replica read them.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Final, cast

from skyctl.router.batch import WriteBatch
from skyctl.router.deadlines import Deadlines
from skyctl.router.headcache import LOOKUPS, PAUSE, remember
from skyctl.router.http1 import (
    LAST_CHUNK,
    MAX_HEAD_BYTES,
    BodyStream,
    Framer,
    Head,
    ProtocolError,
    encode_chunk,
    parse_response_head,
)
from skyctl.router.origin import Origin
from skyctl.router.response import HeadFuture, Listener, Response
from skyctl.router.upstream_errors import (
    BadResponse,
    ClientBodyError,
    ConnectFailed,
    Disconnected,
    NotSent,
    UpstreamError,
)

MAX_IDLE_PER_ORIGIN: Final = 256
# a body already ended: a Framer in its end state keeps no state (feed returns its
# input), so one serves every response whose body is complete at its head
_ENDED: Final = Framer(0, False)


class _Conn:
    """One keep-alive connection carrying one exchange at a time.

    An asyncio protocol by its methods, not by inheritance: a class of its own
    compiles to a native class (mypyc), whose attributes are struct fields.
    """

    def __init__(self, pool: Pool, origin: Origin) -> None:
        self._pool = pool
        self._loop = pool.loop
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._buf = b""
        self._resp: Response | None = None
        self._framer: Framer | None = None
        self._method = b""
        self._sent = True
        self._interim = 0  # bytes of 1xx heads before this response's final head
        self._unsent = False  # the request's first write failed at once: no byte went out
        self._written = True  # the request's first write was made (it waits for the batch)
        self._upload: asyncio.Task[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._write_head = self._write_first  # bound once, not per request
        self._pause: Callable[[], None] | None = None
        self._resume: Callable[[], None] | None = None

    # ---- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        # bound once, not per request
        self._pause = self.transport.pause_reading
        self._resume = self.transport.resume_reading

    def data_received(self, data: bytes) -> None:
        resp = self._resp
        if resp is None:  # bytes on an idle connection: the replica is confused
            self.abort()
            return
        framer = self._framer
        listener = None
        if framer is None:
            if self._buf:
                data, self._buf = self._buf + data, b""
            try:
                data = self._parse_head(resp, data)
            except ProtocolError as exc:
                self._fail(BadResponse(exc.detail))
                return
            framer = self._framer
            if framer is None:  # the head is not complete yet
                return
            listener, resp.listener = resp.listener, None
            if framer is _ENDED:  # the whole response came with its head (the common case)
                self._done(resp, not data)
                if listener is not None:
                    listener.on_head(resp)
                return
            if not data and not framer.done:
                if listener is not None:
                    listener.on_head(resp)
                return
        try:
            rest = framer.feed(data, resp.body)
        except ProtocolError as exc:
            self._fail(BadResponse(exc.detail))
            rest = None
        else:
            if rest is not None:
                self._complete(not rest)
        if listener is not None:  # told after the body bytes that came along are in
            listener.on_head(resp)

    def _parse_head(self, resp: Response, data: bytes) -> bytes:
        while True:
            end = data.find(b"\r\n\r\n")
            if end < 0 or end > MAX_HEAD_BYTES:  # too large however it arrived: in one read too
                if len(data) > MAX_HEAD_BYTES:
                    raise ProtocolError(502, "response head too large")
                self._buf = data
                return b""
            pool = self._pool
            misses = pool.head_misses  # heads parsed since the cache's last hit
            if misses < LOOKUPS:  # a head seen before (headcache.py)
                key = data if len(data) == end + 4 else data[: end + 4]
                head = pool.heads.get(key)
            else:
                key, head = b"", None
            if head is None:
                head = parse_response_head(data[: end + 2])
                if key:
                    remember(pool.heads, key, head)
                pool.head_misses = misses + 1 if misses < LOOKUPS + PAUSE else 0
            elif misses:
                pool.head_misses = 0
            data = data[end + 4 :]
            if head.status >= 200:
                break
            if head.status == 101:
                raise ProtocolError(502, "unexpected protocol switch")
            if not head.keep_alive:  # llhttp: nothing may follow it
                raise ProtocolError(502, "informational response on a closing connection")
            if data[:1] == b"\r" or data[:1] == b"\n":
                data = data.lstrip(b"\r\n")  # empty lines between messages (as llhttp)
            # 1xx informational: its listener may pass it on; the final head follows
            self._interim += end + 4
            if self._interim > MAX_HEAD_BYTES:  # a replica cannot flood the client with them
                raise ProtocolError(502, "informational responses over the head limit")
            interim = getattr(resp.listener, "on_interim", None)
            if interim is not None:
                interim(head)
        if self._interim:
            self._interim = 0
        resp.head = head
        status = head.status  # (response_has_body, inline)
        if self._method == b"HEAD" or status == 204 or status == 304:
            resp.whole = b""
            self._framer = _ENDED
        elif head.content_length is not None and len(data) == head.content_length:
            # the common small answer, whole in this read: no framer, no stream
            resp.whole, data = data, b""
            self._framer = _ENDED
        else:
            resp._body = BodyStream(self._pause, self._resume, self._pool.read_timeout)
            self._framer = Framer(head.content_length, head.chunked)
        self._pool.deadlines.discard(resp)
        return data

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost decides what the EOF meant

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool._forget(self)
        resp = self._resp
        if resp is not None:
            framer = self._framer
            if framer is not None and framer.until_close and exc is None:
                self._complete(reusable=False)
            elif framer is None and (self._unsent or not self._written):
                self._fail(NotSent("connection found closed when the request was written"))
            elif framer is None:
                self._fail(Disconnected("connection closed before a response"))
            else:
                self._fail(Disconnected("connection closed before the response ended"))
        if self._upload is not None:
            self._upload.cancel()
            self._upload = None
        self._wake_drain()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drain()

    def _wake_drain(self) -> None:
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _drain(self) -> None:
        if self.closed:
            raise Disconnected("connection closed while sending the request body")
        if self._write_paused:
            self._drain_waiter = self._loop.create_future()
            await self._drain_waiter

    # ---- exchange ----------------------------------------------------------------------

    def begin(
        self,
        method: bytes,
        head: bytes,
        body: bytes | BodyStream | None,
        timeout: float | None,
        chunked: bool,
        listener: Listener,
    ) -> Response:
        """Send a request; ``listener`` is told at its response head (or failure)."""
        transport = self.transport
        assert transport is not None and self._resp is None
        pool = self._pool
        resp = Response(listener)
        resp._conn = self
        self._resp = resp
        self._method = method
        self._framer = None
        self._unsent = False
        self._written = False
        if isinstance(body, BodyStream):
            self._write_first(head)
            self._sent = False
            self._upload = asyncio.ensure_future(self._send_body(body, chunked))
        else:  # at the end of this loop iteration, with the other writes
            pool.batch.write(self._write_head, head + body if body else head)
            self._sent = True
        # the response head within the request timeout (service.router.request_timeout_seconds,
        # as documented); the stream timeout bounds silences inside the body
        limit = pool.read_timeout if timeout is None else timeout
        pool.deadlines.add(resp, self._loop.time() + limit)
        return resp

    def _write_first(self, data: bytes) -> None:
        """Write the request head (with a bytes body)."""
        transport = self.transport
        if transport is None or self.closed or transport.is_closing():
            return  # cancelled meanwhile; connection_lost reports a broken one
        self._written = True
        transport.write(data)
        # A write on a connection already reset fails inside write() before any
        # byte is taken (the transport closes at once); a later failure may not.
        self._unsent = transport.is_closing()

    async def _send_body(self, body: BodyStream, chunked: bool) -> None:
        transport = self.transport
        assert transport is not None
        try:
            while True:
                data = await body.read()
                if not data:
                    break
                transport.write(encode_chunk(data) if chunked else data)
                await self._drain()
            if chunked:
                transport.write(LAST_CHUNK)
            self._sent = True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the client's body broke: this exchange cannot finish
            self._fail(ClientBodyError(exc))
        finally:
            self._upload = None

    def _complete(self, reusable: bool) -> None:
        resp = self._resp
        assert resp is not None
        resp.body.finish()
        self._done(resp, reusable)

    def _done(self, resp: Response, reusable: bool) -> None:
        """``resp`` has fully arrived: back to the pool, or closed."""
        keep = reusable and self._sent and resp.head.keep_alive and not self.closed
        self._resp = None
        self._framer = None
        resp._conn = None
        if keep:
            self._pool._put(self)
        else:
            self.abort()

    def _fail(self, exc: UpstreamError) -> None:
        resp = self._resp
        self._resp = None
        listener = None
        if resp is not None:
            resp._conn = None
            listener, resp.listener = resp.listener, None
            if listener is not None:  # before the head: the listener is told
                self._pool.deadlines.discard(resp)
            else:  # after it: whoever reads the body is
                resp.body.fail(exc)
        self.abort()
        if listener is not None and resp is not None:
            listener.on_error(resp, exc)

    def abort(self) -> None:
        self.closed = True
        if self._upload is not None:
            self._upload.cancel()
            self._upload = None
        if self.transport is not None:
            self.transport.abort()


class Pool:
    """Keep-alive connections to replicas (see the module docstring)."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        keepalive: float = 4.0,
        max_idle: int = MAX_IDLE_PER_ORIGIN,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``ssl_context`` verifies https replicas (default: the system's CAs)."""
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive = keepalive
        self.max_idle = max_idle
        self.connects = 0  # connections opened, ever (reuse shows as requests > connects)
        self._idle: dict[Origin, list[_Conn]] = {}
        self._open: set[_Conn] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._ssl = ssl_context
        self.loop = asyncio.get_running_loop()  # created inside the event loop it serves
        self.deadlines = Deadlines(self.loop)
        self.batch = WriteBatch(self.loop)  # requests go out at the end of each iteration
        self.heads: dict[bytes, Head] = {}  # response heads parsed, by their bytes
        self.head_misses = 0  # heads parsed since the last hit (headcache.py)

    async def request(
        self,
        origin: Origin,
        method: bytes,
        head: bytes,
        body: bytes | BodyStream | None = None,
        head_timeout: float | None = None,
        chunked: bool = False,
    ) -> Response:
        """Send ``head`` (a complete request head) and ``body``; return at the response head.

        A :class:`BodyStream` body is uploaded as it arrives, chunk-encoded when
        ``chunked`` (the head then says ``Transfer-Encoding: chunked``).
        """
        arrival = HeadFuture()
        resp = self.begin(origin, method, head, body, head_timeout, chunked, arrival)
        if resp is None:
            conn = await self.connect(origin)
            resp = conn.begin(method, head, body, head_timeout, chunked, arrival)
        try:
            return await arrival.future
        except BaseException:
            resp.release()  # cancelled or timed out: the connection closes
            raise

    def begin(
        self,
        origin: Origin,
        method: bytes,
        head: bytes,
        body: bytes | BodyStream | None,
        head_timeout: float | None,
        chunked: bool,
        listener: Listener,
    ) -> Response | None:
        """Send on an idle pooled connection at once, without awaiting; None if there is none.

        ``listener`` is told at the response head (:class:`HeadFuture` to await it
        instead); the caller must :meth:`Response.release` the response when done.
        """
        conns = self._idle.get(origin)  # (self._take's common case, inline: the hot path)
        if not conns:
            return None
        conn = conns.pop()
        if conn.closed or conn.transport is None or conn.transport.is_closing():
            conn.abort()
            taken = self._take(origin)
            if taken is None:
                return None
            conn = taken
        return conn.begin(method, head, body, head_timeout, chunked, listener)

    def idle_count(self, origin: Origin | None = None) -> int:
        if origin is not None:
            return len(self._idle.get(origin, ()))
        return sum(len(conns) for conns in self._idle.values())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self.deadlines.close()
        for conn in list(self._open):
            conn.abort()
        self._idle.clear()
        self._open.clear()
        await asyncio.sleep(0)  # let the transports run their connection_lost

    def retain(self, origins: set[Origin]) -> None:
        """Close the idle connections to origins not in ``origins`` (replicas gone)."""
        for origin in [o for o in self._idle if o not in origins]:
            for conn in self._idle.pop(origin):
                conn.abort()

    # ---- internals -----------------------------------------------------------------------

    def _take(self, origin: Origin) -> _Conn | None:
        conns = self._idle.get(origin)
        if not conns:
            return None
        conn = conns.pop()
        if conn.closed or conn.transport is None or conn.transport.is_closing():
            conn.abort()
            return self._take(origin)
        return conn

    def replica_ssl(self) -> ssl.SSLContext:
        """The context that verifies https replicas."""
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def connect(self, origin: Origin) -> _Conn:
        """A new connection (not pooled until its first exchange completes); send with
        its ``begin``. Raises :class:`ConnectFailed`."""
        loop = self.loop
        context: ssl.SSLContext | None = None
        if origin.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, protocol = await loop.create_connection(
                    cast(Callable[[], asyncio.Protocol], lambda: _Conn(self, origin)),
                    origin.host,
                    origin.port,
                    ssl=context,
                )
                conn = cast(_Conn, protocol)
        except TimeoutError as exc:
            raise ConnectFailed(f"connect to {origin.host}:{origin.port} timed out") from exc
        except OSError as exc:
            raise ConnectFailed(_describe(exc)) from exc
        self.connects += 1
        self._open.add(conn)
        return conn

    def _put(self, conn: _Conn) -> None:
        conns = self._idle.get(conn.origin)
        if conns is None:
            conns = self._idle[conn.origin] = []
        elif len(conns) >= self.max_idle:
            conn.abort()
            return
        loop = self.loop
        conn.idle_since = loop.time()
        conns.append(conn)
        if self._sweeper is None:
            self._sweeper = loop.call_later(self.keepalive, self._sweep)

    def _forget(self, conn: _Conn) -> None:
        self._open.discard(conn)
        conns = self._idle.get(conn.origin)
        if conns and conn in conns:
            conns.remove(conn)

    def _sweep(self) -> None:
        self._sweeper = None
        loop = self.loop
        limit = loop.time() - self.keepalive
        for origin, conns in list(self._idle.items()):
            expired = [c for c in conns if c.idle_since <= limit]
            for conn in expired:
                conns.remove(conn)
                conn.abort()
            if not conns:
                del self._idle[origin]
        if self._idle:
            self._sweeper = loop.call_later(self.keepalive / 2, self._sweep)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
