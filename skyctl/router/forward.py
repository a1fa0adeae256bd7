"""One replica at a time: the exchange of ``least_load`` and the other one-replica policies.

:class:`Forward` sends the request to the replica its ``pick`` chooses; a
connection error moves on to the next untried replica (an idempotent request,
or one the replica cannot have seen, :func:`~skyctl.router.upstream.may_retry`);
no head within the request timeout answers 504; a replica's own 5xx passes
through. It is itself the :class:`~skyctl.router.exchange.Try` on its current
replica (the connection's listener), so a request makes no object per try.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from skyctl.router.client import ClientBodyError, Response
from skyctl.router.exchange import Context, Exchange, send
from skyctl.router.front import Connection, Request
from skyctl.router.headers import downstream_lines
from skyctl.router.http1 import REASONS, BodyStream, Head
from skyctl.router.stats import ReplicaState
from skyctl.router.upstream import AttemptFailed, may_retry


class Forward(Exchange):
    """One replica at a time (see the module docstring): itself the
    :class:`~skyctl.router.exchange.Try` on the current replica, the connection's
    listener (no object per try)."""

    __slots__ = (
        "_body",
        "_excluded",
        "_last",
        "_length",
        "_pick",
        "_replicas",
        "_sent_at",
        "_timeout",
        "_tries",
        "connecting",
        "released",
        "replica",
        "resp",
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
        """``replicas``: not empty."""
        Exchange.__init__(self, ctx, out, request, rid, lines)  # (no super object per request)
        self._replicas = replicas
        self._pick = pick
        self._body = body
        self._length = length
        self._tries = tries
        self._timeout = timeout
        self._excluded: frozenset[int] = frozenset()
        self._last: AttemptFailed | None = None
        # the current try (Try): its replica, the in-flight slot it holds until
        # dropped or failed, its response, the connection being opened for it
        self.replica = replicas[0]
        self.released = True  # no slot held before the first try
        self._sent_at = 0.0
        self.resp: Response | None = None
        self.connecting: asyncio.Task[None] | None = None

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
        replica = self.replica = self._replicas[index]
        replica.in_flight += 1  # the try's in-flight slot (as an Attempt holds one)
        replica.requests += 1
        self.released = False
        self._sent_at = self.ctx.clock.now()
        send(self, self.ctx, self.request, self.lines, self._body, self._length, self._timeout)

    # -- Listener (of the current try)
    def on_head(self, resp: Response) -> None:
        self.resp = resp
        ctx = self.ctx
        replica = self.replica
        elapsed = ctx.clock.now() - self._sent_at
        replica.latency.add(elapsed)
        ctx.latency.add(elapsed)
        try:
            if resp.head.status >= 500:
                replica.failed("5xx")
            else:
                replica.wins += 1
                if replica.consecutive:  # ReplicaState.answered, inline (the hot path)
                    replica.consecutive = 0
            self.deliver(self)
        except Exception as exc:  # a bug of ours: answer 500, keep the connection sane
            self.crash(exc)

    def on_interim(self, head: Head) -> None:
        """A 1xx from the current try (its one replica): to the client at once (a
        retry after it is still safe: no final response went out)."""
        reason = head.reason or REASONS.get(head.status, b"")
        self.out.interim(head.status, reason, downstream_lines(head, rid=self.rid))

    def on_error(self, resp: Response | None, exc: BaseException) -> None:
        self.resp = None
        if resp is not None:
            resp.release()
        self._release()
        if not isinstance(exc, ClientBodyError):
            self.replica.failed("timeout" if isinstance(exc, TimeoutError) else "connection")
        try:
            self._failed(exc)
        except Exception as exc2:  # a bug of ours: answer 500, keep the connection sane
            self.crash(exc2)

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, ClientBodyError):
            self.client_failed(exc)
            return
        failure = self.ctx.upstream.failure(self.replica, exc)
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

    def drop(self) -> None:
        """Done with the current try: stop it if in flight (its connection closes
        unless the answer arrived whole) and free its slot."""
        task, self.connecting = self.connecting, None
        if task is not None:
            task.cancel()
        resp, self.resp = self.resp, None
        if resp is not None:
            if resp._conn is None:  # (Response.release, inline: arrived whole, nothing to close)
                resp.listener = None
            else:
                resp.release()
        self._release()

    def _release(self) -> None:
        if not self.released:
            self.released = True
            self.replica.in_flight -= 1

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
        self.drop()

    def _copy_tasks(self) -> list[asyncio.Task[None] | None]:
        return [self.connecting]
