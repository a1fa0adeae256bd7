"""A proxied request driven by callbacks: copies on replicas, and one forwarded request.

The request path runs without a task or a future in the common case: a
:class:`Try` (a race's :class:`Copy`, or a :class:`~skyctl.router.forward.Forward`
itself) sends the request on an idle pooled connection (:func:`send`) as the
connection's :class:`~skyctl.router.client.Listener`, the connection
tells it when the response head is in (with the body, when it came along),
and a response that arrived whole goes to the client in one write from that
same callback. Tasks appear only where something must wait: a new
connection being opened, a streamed response being relayed
(:func:`~skyctl.router.upstream.relay`).

- :class:`Exchange` is what :mod:`skyctl.router.front` drives: ``start``,
  ``cancel`` (the client hung up) and, when answered, a call to
  :meth:`~skyctl.router.front.Connection.exchange_done` (or, when a handler
  task awaits it, :meth:`Exchange.wait`).
- :class:`~skyctl.router.forward.Forward` tries one replica at a time
  (:mod:`skyctl.router.forward`).
- :class:`~skyctl.router.race.Race` (fan-out and hedging) builds on the same
  copies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from skyctl.clock import Clock
from skyctl.router.client import ClientBodyError, Response
from skyctl.router.front import Connection, Request
from skyctl.router.headers import downstream_lines
from skyctl.router.http1 import BodyStream
from skyctl.router.stats import FOLD_AT, Attempt, Histogram, ReplicaState, Reservoir
from skyctl.router.upstream import Upstream, relay

if TYPE_CHECKING:
    from skyctl.router.health import Health

log = logging.getLogger(__name__)
# made once, not formatted per request (a %-format parses its template each time)
_LENGTHS: Final = tuple(b"Content-Length: %d\r\n" % n for n in range(1024))


@dataclass(eq=False)
class Context:
    """What every exchange of one router shares."""

    upstream: Upstream
    clock: Clock
    latency: Reservoir  # time to headers over all replicas (the hedge delay)
    service: str
    loop: asyncio.AbstractEventLoop
    on_finish: Callable[[], None]  # an exchange is over (the router's active count)
    first_byte: Histogram  # seconds from the request to the response head, to the client
    duration: Histogram  # seconds from the request to the response's end
    health: Health | None = None  # passive health: a race's losers may run on as checks


class Try(Protocol):
    """One try of the request on one replica, the connection's listener: a race's
    :class:`Copy`, or a :class:`Forward` itself (one try at a time, no object per try).
    Holds an in-flight slot on ``replica`` until :meth:`drop` or a failure."""

    replica: ReplicaState
    resp: Response | None
    connecting: asyncio.Task[None] | None  # opening a new connection first

    def on_head(self, resp: Response) -> None: ...

    def on_error(self, resp: Response | None, exc: BaseException) -> None: ...

    def drop(self) -> None: ...


def send(
    attempt: Try,
    ctx: Context,
    request: Request,
    lines: bytes,
    body: bytes | BodyStream | None,
    length: int | None,
    timeout: float | None,
) -> None:
    """Send ``request`` to ``attempt.replica`` with ``attempt`` as the listener: on an
    idle pooled connection at once (``attempt.resp``), else on a new one once
    connected (``attempt.connecting``)."""
    head = request.head
    upstream = ctx.upstream
    replica = attempt.replica
    origin = replica.origin
    if isinstance(body, BodyStream):
        wire, chunked = upstream.prepare(replica, head.method, head.target, lines, body, length)
    else:  # (upstream.prepare for a bytes body, inline: the hot path)
        chunked = False
        if body or length is not None:
            size = len(body) if body else 0
            framing = _LENGTHS[size] if size < 1024 else b"Content-Length: %d\r\n" % size
        else:
            framing = b""
        wire = b"".join(
            (
                head.method,
                b" ",
                origin.prefix,
                head.target,
                b" HTTP/1.1\r\nHost: ",
                origin.host_header,
                b"\r\n",
                lines,
                framing,
                b"\r\n",
                body or b"",
            )
        )
        body = b""  # in the one bytes with its head: no second copy to send
    resp = upstream.pool.begin(origin, head.method, wire, body, timeout, chunked, attempt)
    if resp is not None:
        attempt.resp = resp
    else:  # no idle connection: open one first
        task = _connect(attempt, ctx, head.method, wire, body, timeout, chunked)
        attempt.connecting = ctx.loop.create_task(task)


async def _connect(
    attempt: Try,
    ctx: Context,
    method: bytes,
    wire: bytes,
    body: bytes | BodyStream | None,
    timeout: float | None,
    chunked: bool,
) -> None:
    try:
        conn = await ctx.upstream.pool.connect(attempt.replica.origin)
    except Exception as exc:
        attempt.connecting = None
        attempt.on_error(None, exc)
        return
    attempt.connecting = None
    attempt.resp = conn.begin(method, wire, body, timeout, chunked, attempt)


class Copy(Attempt):
    """A race's request on one replica (a :class:`Try`; an
    :class:`~skyctl.router.stats.Attempt`). Tells its owner ``copy_head(copy)`` or
    ``copy_failed(copy, exc)``, once.
    """

    __slots__ = ("connecting", "owner", "resp", "started")

    def __init__(
        self,
        owner: Exchange,
        replica: ReplicaState,
        body: bytes | BodyStream | None,
        length: int | None,
        timeout: float | None,
    ) -> None:
        # Attempt's slot, inline (the hot path)
        self.replica = replica
        self.released = False
        replica.in_flight += 1
        replica.requests += 1
        ctx = owner.ctx
        self.owner = owner
        self.started = ctx.clock.now()
        self.resp: Response | None = None
        self.connecting: asyncio.Task[None] | None = None
        send(self, ctx, owner.request, owner.lines, body, length, timeout)

    # -- Listener
    def on_head(self, resp: Response) -> None:
        self.resp = resp
        elapsed = self.owner.ctx.clock.now() - self.started
        self.replica.latency.add(elapsed)
        self.owner.ctx.latency.add(elapsed)
        try:
            self.owner.copy_head(self)
        except Exception as exc:  # a bug of ours: answer 500, keep the connection sane
            self.owner.crash(exc)

    def on_error(self, resp: Response | None, exc: BaseException) -> None:
        self.resp = None
        if resp is not None:
            resp.release()
        self.release()
        if not isinstance(exc, ClientBodyError):
            self.replica.failed("timeout" if isinstance(exc, TimeoutError) else "connection")
        try:
            self.owner.copy_failed(self, exc)
        except Exception as exc2:  # a bug of ours: answer 500, keep the connection sane
            self.owner.crash(exc2)

    # -- owner side
    @property
    def task(self) -> asyncio.Task[None] | None:
        return self.connecting

    def drop(self) -> None:
        """Done with this copy: stop it if in flight (its connection closes unless the
        answer arrived whole) and free its slot. Its owner is told nothing more."""
        task, self.connecting = self.connecting, None
        if task is not None:
            task.cancel()
        resp, self.resp = self.resp, None
        if resp is not None:
            resp.release()
        self.release()


class Call:
    """What a race starts from: the router's context and the client's request
    (:class:`Forward` takes the same as arguments: one object less per request).

    A plain class, not a NamedTuple: compiled, it is built by a C call (a
    NamedTuple's ``__new__`` runs as Python, once per request).
    """

    __slots__ = ("ctx", "lines", "out", "request", "rid")

    def __init__(
        self, ctx: Context, out: Connection, request: Request, rid: bytes, lines: bytes
    ) -> None:
        self.ctx = ctx
        self.out = out
        self.request = request
        self.rid = rid  # the request id
        self.lines = lines  # the header lines forwarded to replicas


class Exchange:
    """One client request in flight (see the module docstring); subclasses pick replicas."""

    __slots__ = (
        "_relay",
        "_waiter",
        "ctx",
        "first",
        "lines",
        "on_answer",
        "out",
        "over",
        "replica_id",
        "request",
        "rid",
        "started",
        "status",
    )

    def __init__(
        self, ctx: Context, out: Connection, request: Request, rid: bytes, lines: bytes
    ) -> None:
        """``rid``: the request id; ``lines``: the header lines forwarded to replicas."""
        self.ctx = ctx
        self.started = ctx.clock.now()
        self.replica_id = -1  # who answered (-1: the router itself)
        self.status = 0  # the status answered (0: none yet)
        self.first = 0.0  # when a streamed response's head went out (0.0: at the end)
        self.out = out
        self.request = request
        self.rid = rid
        self.lines = lines
        self.over = False
        self._waiter: asyncio.Future[None] | None = None
        self._relay: asyncio.Task[None] | None = None
        # told once when the response's first body bytes arrive or the exchange ends
        # (cache_aware: the request's prefill is no longer pending at the replica)
        self.on_answer: Callable[[], None] | None = None

    # -- driven by the front, or by a handler task
    def start(self) -> None:
        raise NotImplementedError  # each subclass sends its copies

    def cancel(self) -> None:
        """The client hung up (or the handler awaiting us was cancelled)."""
        if self.over:
            return
        relay_task, self._relay = self._relay, None
        if relay_task is not None:
            relay_task.cancel()
        self._drop_all()
        self._finish(answered=False)

    def tasks(self) -> list[asyncio.Task[Any]]:
        return [t for t in (self._relay, *self._copy_tasks()) if t is not None]

    async def wait(self) -> None:
        """Start, and return once answered (for a handler task); cancelling the
        waiting task cancels the exchange."""
        self._waiter = self.ctx.loop.create_future()
        try:
            self.start()
            await self._waiter
        finally:
            self.cancel()  # nothing once over

    # -- subclasses
    def copy_head(self, copy: Copy) -> None:
        raise NotImplementedError

    def copy_failed(self, copy: Copy, exc: BaseException) -> None:
        raise NotImplementedError

    def _drop_all(self) -> None:
        raise NotImplementedError

    def _copy_tasks(self) -> list[asyncio.Task[None] | None]:
        return []

    # -- answering
    def deliver(self, copy: Try) -> None:
        """``copy`` won: its response goes to the client (in one write when whole)."""
        resp = copy.resp
        assert resp is not None
        self.replica_id, self.status = copy.replica.replica_id, resp.head.status
        whole = resp.whole
        if whole is not None:  # the head goes out with the end: one clock read, at the end
            resp.whole = None
            head = resp.head  # (self.send_whole, inline: the hot path)
            lines = downstream_lines(head, rid=self.rid)
            self.out.send(head.status, head.reason, lines, whole, head.content_length)
            copy.drop()  # arrived whole: its connection is back in the pool
            self._finish()
            return
        if resp.body.complete:
            self.send_whole(copy, resp.body.take())
            return
        self.first = self.ctx.clock.now()
        self._relay = self.ctx.loop.create_task(self._relay_stream(copy))

    def send_whole(self, copy: Try, body: bytes) -> None:
        """Answer with ``copy``'s response head and ``body`` in one write, and finish."""
        resp = copy.resp
        assert resp is not None
        head = resp.head
        # (a race's error answer comes here without deliver: its status counts too)
        self.replica_id, self.status = copy.replica.replica_id, head.status
        lines = downstream_lines(head, rid=self.rid)
        self.out.send(head.status, head.reason, lines, body, head.content_length)
        copy.drop()  # a response that arrived whole: its connection is back in the pool
        self._finish()

    async def _relay_stream(self, copy: Try) -> None:
        resp = copy.resp
        assert resp is not None
        replica = copy.replica
        try:
            await relay(self.out, resp, self.rid, lambda: self._broken(replica), self.on_answer)
        except Exception as exc:  # the client's body failed (its status), or our bug
            self.out.fail(self.request, exc)
        finally:
            self._relay = None
            copy.drop()
        self._finish()

    def _broken(self, replica: ReplicaState) -> None:
        replica.failed("stream broken")
        self.ctx.upstream.report(replica.replica_id, "stream broken")

    def send_json(self, status: int, body: dict[str, Any]) -> None:
        self.replica_id, self.status = -1, status
        self.out.send_json(status, {**body, "service": self.ctx.service}, self.rid)
        self._finish()

    def client_failed(self, exc: ClientBodyError) -> None:
        """The request body failed on the client's side while it was uploaded."""
        cause = exc.cause
        self.out.fail(self.request, cause if isinstance(cause, Exception) else exc)
        self._finish()

    def crash(self, exc: Exception) -> None:
        """A bug of ours in a callback: answer 500 (or cut), release everything."""
        if self.over:
            log.error("router exchange failed after it was over", exc_info=exc)
            return
        self._drop_all()
        self.out.fail(self.request, exc)
        self._finish()

    def _finish(self, answered: bool = True) -> None:
        if self.over:
            return
        self.over = True
        answer = self.on_answer
        if answer is not None:
            self.on_answer = None
            answer()
        ctx = self.ctx
        status = self.status
        if status:  # the histograms' samples, counted later in one loop (stats.Histogram)
            now = ctx.clock.now()
            started, replica = self.started, self.replica_id
            sample = (replica, status, now - started)
            pending = ctx.duration.pending
            pending.append(sample)
            first = self.first  # 0.0: the head went out with the end (the same sample)
            ctx.first_byte.pending.append((replica, status, first - started) if first else sample)
            if len(pending) >= FOLD_AT:
                ctx.duration.fold()
                ctx.first_byte.fold()
        ctx.on_finish()
        waiter = self._waiter
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(None)
        elif answered:
            self.out.exchange_done()
