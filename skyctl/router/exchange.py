"""A proxied request driven by callbacks: copies on replicas, and one forwarded request.

The request path runs without a task or a future in the common case: a
:class:`Copy` sends the request on an idle pooled connection with itself as
the connection's :class:`~skyctl.router.client.Listener`, the connection
tells it when the response head is in (with the body, when it came along),
and a response that arrived whole goes to the client in one write from that
same callback. Tasks appear only where something must wait: a new
connection being opened, a streamed response being relayed
(:func:`~skyctl.router.upstream.relay`).

- :class:`Exchange` is what :mod:`skyctl.router.front` drives: ``start``,
  ``cancel`` (the client hung up) and, when answered, a call to
  :meth:`~skyctl.router.front.Connection.exchange_done` (or, when a handler
  task awaits it, :meth:`Exchange.wait`).
- :class:`Forward` tries one replica at a time: a connection error moves on to
  the next untried replica (an idempotent request, or one the replica cannot
  have seen, :func:`~skyctl.router.upstream.may_retry`); no head within the
  request timeout answers 504; a replica's own 5xx passes through.
- :class:`~skyctl.router.race.Race` (fan-out and hedging) builds on the same
  copies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from skyctl.clock import Clock
from skyctl.router.client import ClientBodyError, Response
from skyctl.router.front import Connection, Request
from skyctl.router.headers import downstream_lines
from skyctl.router.http1 import BodyStream
from skyctl.router.stats import FOLD_AT, Attempt, Histogram, ReplicaState, Reservoir
from skyctl.router.upstream import AttemptFailed, Upstream, may_retry, relay

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


class Copy(Attempt):
    """The request on one replica; the connection's listener.

    An :class:`~skyctl.router.stats.Attempt`: holds an in-flight slot from
    creation until :meth:`drop` or a failure. Tells its owner
    ``copy_head(copy)`` or ``copy_failed(copy, exc)``, once.
    """

    __slots__ = ("_task", "owner", "resp", "started")

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
        self._task: asyncio.Task[None] | None = None
        head = owner.request.head
        upstream = ctx.upstream
        origin = replica.origin
        if isinstance(body, BodyStream):
            wire, chunked = upstream.prepare(
                replica, head.method, head.target, owner.lines, body, length
            )
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
                    owner.lines,
                    framing,
                    b"\r\n",
                    body or b"",
                )
            )
            body = b""  # in the one bytes with its head: no second copy to send
        resp = upstream.pool.begin(origin, head.method, wire, body, timeout, chunked, self)
        if resp is not None:
            self.resp = resp
        else:  # no idle connection: open one first
            self._task = ctx.loop.create_task(self._connect(wire, body, timeout, chunked))

    async def _connect(
        self, wire: bytes, body: bytes | BodyStream | None, timeout: float | None, chunked: bool
    ) -> None:
        pool = self.owner.ctx.upstream.pool
        try:
            conn = await pool.connect(self.replica.origin)
        except Exception as exc:
            self._task = None
            self.on_error(None, exc)
            return
        self._task = None
        method = self.owner.request.head.method
        self.resp = conn.begin(method, wire, body, timeout, chunked, self)

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
        return self._task

    def drop(self) -> None:
        """Done with this copy: stop it if in flight (its connection closes unless the
        answer arrived whole) and free its slot. Its owner is told nothing more."""
        task, self._task = self._task, None
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
    def deliver(self, copy: Copy) -> None:
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

    def send_whole(self, copy: Copy, body: bytes) -> None:
        """Answer with ``copy``'s response head and ``body`` in one write, and finish."""
        resp = copy.resp
        assert resp is not None
        head = resp.head
        lines = downstream_lines(head, rid=self.rid)
        self.out.send(head.status, head.reason, lines, body, head.content_length)
        copy.drop()  # a response that arrived whole: its connection is back in the pool
        self._finish()

    async def _relay_stream(self, copy: Copy) -> None:
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


class Forward(Exchange):
    """One replica at a time (see the module docstring)."""

    __slots__ = (
        "_body",
        "_copy",
        "_excluded",
        "_last",
        "_length",
        "_pick",
        "_replicas",
        "_timeout",
        "_tries",
    )

    def __init__(
        self,
        ctx: Context,
        out: Connection,
        request: Request,
        rid: bytes,
        lines: bytes,
        replicas: Sequence[ReplicaState],
        pick: Callable[[Sequence[ReplicaState], frozenset[int]], int],
        body: bytes | BodyStream | None,
        length: int | None,
        tries: int,
        timeout: float,
    ) -> None:
        Exchange.__init__(self, ctx, out, request, rid, lines)  # (no super object per request)
        self._replicas = replicas
        self._pick = pick
        self._body = body
        self._length = length
        self._tries = tries
        self._timeout = timeout
        self._excluded: frozenset[int] = frozenset()
        self._copy: Copy | None = None
        self._last: AttemptFailed | None = None

    def start(self) -> None:
        if self._tries <= 0:
            self._all_failed()
            return
        index = self._pick(self._replicas, self._excluded)
        if index < 0:
            self._all_failed()
            return
        self._excluded = self._excluded | {index}
        self._tries -= 1
        self._copy = Copy(self, self._replicas[index], self._body, self._length, self._timeout)

    def copy_head(self, copy: Copy) -> None:
        self._copy = None
        assert copy.resp is not None
        replica = copy.replica
        if copy.resp.head.status >= 500:
            replica.failed("5xx")
        else:
            replica.wins += 1
            if replica.consecutive:  # ReplicaState.answered, inline (the hot path)
                replica.consecutive = 0
        self.deliver(copy)

    def copy_failed(self, copy: Copy, exc: BaseException) -> None:
        self._copy = None
        if isinstance(exc, ClientBodyError):
            self.client_failed(exc)
            return
        failure = self.ctx.upstream.failure(copy.replica, exc)
        if failure.kind == "timeout":
            self.send_json(504, {"error": "replica did not answer in time"})
            return
        self._last = failure
        method = self.request.head.method
        if may_retry(method, failure):
            self.start()
            return
        error = f"replica failed after the request was sent; a {method.decode('latin-1')} "
        self.send_json(502, {"error": error + "is not retried", "detail": failure.detail})

    def _all_failed(self) -> None:
        last = self._last
        self.send_json(
            502,
            {
                "error": f"all {len(self._excluded)} tried replicas failed",
                "detail": last.detail if last is not None else "no replica to try",
            },
        )

    def _drop_all(self) -> None:
        copy, self._copy = self._copy, None
        if copy is not None:
            copy.drop()

    def _copy_tasks(self) -> list[asyncio.Task[None] | None]:
        return [self._copy.task] if self._copy is not None else []
