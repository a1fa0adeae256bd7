"""WebSocket (any ``Upgrade``) through the router: one replica, then a byte tunnel.

A request whose head asks for an upgrade (``Connection: upgrade`` and an
``Upgrade`` header; :attr:`skyctl.router.http1.Head.upgrade`) ends HTTP/1.1 on
the client's connection, as llhttp frames it. :func:`tunnel` sends it to one
replica on a connection of its own (never pooled, never fanned out or
hedged), and:

- when the replica answers ``101``, passes that head on and then copies bytes
  both ways until either side closes (flow control both ways: a side whose
  socket buffer is full pauses reading from the other);
- otherwise passes the replica's response on and closes.

The replica's in-flight count holds one slot for the tunnel's whole life, so
``least_load`` sees it. The router's drain waits for tunnels like any request
(up to its grace), then closes them.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Callable
from typing import Final, cast

from skyctl.router.front import Connection, Request
from skyctl.router.headers import downstream_lines, request_head
from skyctl.router.http1 import (
    MAX_HEAD_BYTES,
    REASONS,
    BodyStream,
    Framer,
    Head,
    ProtocolError,
    parse_response_head,
    response_has_body,
)
from skyctl.router.stats import Attempt, ReplicaState
from skyctl.spec import RouterOptions

_MAX_DECLINE_BODY: Final = 1 << 20
_UPGRADE_VALUE: Final = re.compile(rb"(?:^|\n)upgrade:[ \t]*([^\r]*?)[ \t]*\r", re.I).search


def upgrade_lines(request: Request) -> bytes:
    """The hop-by-hop lines an upgrade needs, re-made for the replica."""
    m = _UPGRADE_VALUE(request.head.fields)
    value = m.group(1) if m is not None else b"websocket"
    return b"Connection: Upgrade\r\nUpgrade: %b\r\n" % value


class _Pipe:
    """One side of a tunnel (an asyncio protocol): bytes in go out on the peer."""

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Pipe | None = None
        self._done = done
        self._head = b""  # the replica's response head, while it arrives
        self.head_future: asyncio.Future[tuple[bytes, bytes]] | None = None
        self.pending: list[bytes] = []  # bytes in before there is a peer
        self.more = asyncio.Event()  # set when pending grows or the connection ends
        self.closed = False
        self.eof = False  # the other end sent FIN

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        future = self.head_future
        if future is not None:  # still reading the replica's response head
            data = self._head + data
            end = data.find(b"\r\n\r\n")
            if end < 0 or end > MAX_HEAD_BYTES:  # too large however it arrived
                self._head = data
                if len(data) > MAX_HEAD_BYTES and not future.done():
                    future.set_exception(ProtocolError(502, "response head too large"))
                return
            self.head_future = None
            self._head = b""
            if not future.done():
                future.set_result((data[: end + 2], data[end + 4 :]))
            return
        peer = self.peer
        if peer is None:
            self.pending.append(data)
            self.more.set()
        elif peer.transport is not None:
            peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is None or peer.transport is None:
            return False
        if peer.eof:  # both directions ended: close both
            peer.transport.close()
            return False
        if peer.transport.can_write_eof():
            peer.transport.write_eof()
            return True  # half-closed: the other direction goes on
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.more.set()
        if self.head_future is not None and not self.head_future.done():
            self.head_future.set_exception(ConnectionResetError("replica closed the connection"))
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.close()
        if not self._done.done():
            self._done.set_result(None)

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def tunnel(
    request: Request,
    out: Connection,
    replica: ReplicaState,
    lines: bytes,
    opts: RouterOptions,
    ssl_context: Callable[[], ssl.SSLContext],
    rid: bytes,
) -> None:
    """Send the upgrade request to ``replica`` and serve what it answers (see the
    module docstring); returns once the tunnel or the response is over. A failure
    counts against the replica (passive health, which tells the controller)."""
    connect_timeout = opts.connect_timeout_seconds
    head_timeout = opts.request_timeout_seconds
    loop = asyncio.get_running_loop()
    origin = replica.origin
    attempt = Attempt(replica)
    done: asyncio.Future[None] = loop.create_future()
    upstream = _Pipe(done)
    upstream.head_future = loop.create_future()
    try:
        try:
            async with asyncio.timeout(connect_timeout):
                await loop.create_connection(
                    cast(Callable[[], asyncio.Protocol], lambda: upstream),
                    origin.host,
                    origin.port,
                    ssl=ssl_context() if origin.scheme == "https" else None,
                )
        except (OSError, TimeoutError) as exc:
            replica.failed("connection")
            out.send_json(502, {"error": f"replica unreachable: {exc}"}, rid)
            return
        assert upstream.transport is not None
        head = request_head(
            request.head.method,
            origin.prefix + request.head.target,
            origin.host_header,
            lines + upgrade_lines(request),
        )
        upstream.transport.write(head)
        try:
            async with asyncio.timeout(head_timeout):
                raw, rest = await upstream.head_future
            response = parse_response_head(raw)
        except (OSError, TimeoutError, ProtocolError) as exc:
            replica.failed("timeout" if isinstance(exc, TimeoutError) else "connection")
            status = 504 if isinstance(exc, TimeoutError) else 502
            out.send_json(status, {"error": f"replica failed the upgrade: {exc}"}, rid)
            return
        if response.status >= 500:
            replica.failed("5xx")
        else:
            replica.answered()
        if response.status != 101:
            await _relay_response(out, upstream, response, rest, request, rid, head_timeout)
            return
        client = out.detach()
        if client is None:  # the client is gone
            return
        transport, early = client
        downstream = _Pipe(done)
        downstream.transport = transport
        downstream.peer, upstream.peer = upstream, downstream
        transport.set_protocol(cast(asyncio.BaseProtocol, downstream))
        transport.write(raw + b"\r\n" + rest + b"".join(upstream.pending))
        upstream.pending = []
        if early:
            upstream.transport.write(early)
        transport.resume_reading()
        try:
            await done
        finally:
            downstream.close()
            out.tunnel_closed()
    finally:
        upstream.close()
        attempt.release()


async def _relay_response(
    out: Connection,
    upstream: _Pipe,
    head: Head,
    rest: bytes,
    request: Request,
    rid: bytes,
    timeout: float,
) -> None:
    """The replica declined the upgrade: its response (up to 1 MiB) goes to the
    client, then both connections close (the client's bytes after the head were
    never HTTP/1.1)."""
    lines = downstream_lines(head, rid=rid)
    reason = head.reason or REASONS.get(head.status, b"")
    if not response_has_body(request.head.method, head.status):
        out.send(head.status, reason, lines, b"", head.content_length)
        return
    if (head.content_length or 0) > _MAX_DECLINE_BODY:
        out.send_json(502, {"error": "replica's answer to the upgrade is too large"}, rid)
        return
    body = BodyStream()
    framer = Framer(head.content_length, head.chunked, _MAX_DECLINE_BODY)
    data = rest
    try:
        async with asyncio.timeout(timeout):
            while framer.feed(data, body) is None:
                if upstream.closed and not upstream.pending:
                    break
                if not upstream.pending:
                    upstream.more.clear()
                    await upstream.more.wait()
                data, upstream.pending = b"".join(upstream.pending), []
    except (ProtocolError, TimeoutError) as exc:
        out.send_json(502, {"error": f"replica's answer to the upgrade: {exc}"}, rid)
        return
    if not framer.done and not (framer.until_close and upstream.closed):
        out.send_json(502, {"error": "replica closed before its response ended"}, rid)
        return
    out.send(head.status, reason, lines, body.take())
