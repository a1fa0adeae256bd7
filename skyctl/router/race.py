"""Fan-out and hedging: send one request to several replicas, keep the first good answer.

A :class:`Race` sends copies of a request to replicas (all ``k`` at once for
``fan_out``; one, then a hedge after a delay, for ``hedge``) and waits:

- the first response that is not a 5xx wins, as soon as its headers arrive
  (for a streamed response the router commits to that replica);
- every other copy loses: one still in flight is cancelled, which closes its
  connection (the replica sees the disconnect); one whose answer already
  arrived whole keeps its connection, back in the pool; one half-read is
  closed, never returned to the pool;
- a connection error starts a replacement on an untried replica while
  ``retries`` allow;
- when every copy failed, or the overall deadline passed, the best error is
  answered: a replica's own 5xx first, then 504 for a timeout, then 502.

A copy goes out at once on an idle pooled connection (no task: its
response's ``arrival`` future is watched directly); only a copy that must
connect first runs as a task. The hedge delay runs on the injected clock; the
overall deadline, like the socket timeouts, on the event loop's time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import NamedTuple

from skyctl.clock import Clock
from skyctl.router.client import Response
from skyctl.router.front import Connection, Request
from skyctl.router.headers import downstream_lines
from skyctl.router.stats import Attempt, ReplicaState, Reservoir
from skyctl.router.upstream import AttemptFailed, Upstream, read_error_body, relay


class RacePlan(NamedTuple):
    """What to race: replicas to start at once, spares for hedges and retries."""

    first: Sequence[ReplicaState]
    spares: Sequence[ReplicaState]
    hedge_delay: float | None = None  # None: no hedge
    retries: int = 0
    deadline: float = 300.0


class _Copy:
    """One copy of the request on one replica."""

    __slots__ = ("attempt", "future", "resp", "started")

    def __init__(
        self,
        attempt: Attempt,
        future: asyncio.Future[Response],
        resp: Response | None,
        started: float,
    ) -> None:
        self.attempt = attempt
        self.future = future  # the response's arrival, or a task that connects first
        self.resp = resp  # known at once when sent on a pooled connection
        self.started = started


def _release_late(task: asyncio.Future[Response]) -> None:
    """Done-callback of a cancelled copy's task: drop whatever it still got."""
    if task.cancelled():
        return
    if task.exception() is None:
        task.result().release()


class Race:
    """One request raced over several replicas (see the module docstring)."""

    def __init__(
        self,
        upstream: Upstream,
        clock: Clock,
        latency: Reservoir,
        try_hedge: Callable[[], bool],
        service: str,
    ) -> None:
        self._up = upstream
        self._clock = clock
        self._latency = latency
        self._try_hedge = try_hedge
        self._service = service
        self._loop = asyncio.get_running_loop()  # created inside the event loop it serves

    def _start(
        self,
        replica: ReplicaState,
        request: Request,
        lines: bytes,
        body: bytes,
        length: int | None,
        wake: Callable[[object], None],
    ) -> _Copy:
        attempt = Attempt(replica)
        head = request.head
        started = self._clock.now()
        resp = self._up.begin(replica, head.method, head.target, lines, body, length)
        future: asyncio.Future[Response]
        if resp is not None:
            future = resp.arrival
        else:
            future = self._loop.create_task(
                self._up.open(replica, head.method, head.target, lines, body, None, length)
            )
        future.add_done_callback(wake)
        return _Copy(attempt, future, resp, started)

    def _settle(self, copy: _Copy) -> Response | AttemptFailed:
        """A copy whose future is done: its response (head in) or its failure."""
        replica = copy.attempt.replica
        exc = copy.future.exception()
        if exc is not None:
            replica.errors += 1
            copy.attempt.release()
            if copy.resp is not None:
                copy.resp.release()
            return self._up.failure(replica, exc)
        resp = copy.resp = copy.future.result()
        elapsed = self._clock.now() - copy.started
        replica.latency.add(elapsed)
        self._latency.add(elapsed)
        if resp.status >= 500:
            replica.errors += 1
        return resp

    @staticmethod
    def _lose(copy: _Copy) -> None:
        """A copy that lost: cancel it if in flight; keep its connection only if whole."""
        copy.attempt.replica.cancelled += 1
        copy.attempt.release()
        future = copy.future
        if copy.resp is not None:
            copy.resp.release()  # cancels a pending arrival; closes unless it arrived whole
        elif future.done():
            _release_late(future)
        else:
            future.cancel()  # the task closes its connection as it unwinds
            future.add_done_callback(_release_late)

    async def run(
        self,
        request: Request,
        out: Connection,
        rid: bytes,
        plan: RacePlan,
        lines: bytes,
        body: bytes,
    ) -> None:
        loop = self._loop
        spares = list(plan.spares)
        retries = plan.retries
        started = 0
        pending: list[_Copy] = []
        signal: list[asyncio.Future[None]] = [loop.create_future()]
        head = request.head
        length = None if head.content_length is None and not head.chunked else len(body)

        def wake(_: object) -> None:
            if not signal[0].done():
                signal[0].set_result(None)

        def start(replica: ReplicaState) -> None:
            nonlocal started
            started += 1
            pending.append(self._start(replica, request, lines, body, length, wake))

        for replica in plan.first:
            start(replica)
        deadlines = self._up.pool.deadlines
        deadline = loop.time() + plan.deadline  # a socket-level deadline, on the loop's time
        hedge: asyncio.Task[None] | None = None
        if plan.hedge_delay is not None and spares:
            hedge = loop.create_task(self._clock.sleep(plan.hedge_delay))
            hedge.add_done_callback(wake)
        winner: _Copy | None = None
        error: _Copy | None = None  # the first replica 5xx
        timed_out = False
        try:
            while pending:
                done = [c for c in pending if c.future.done()]
                if not done and not (hedge is not None and hedge.done()):
                    waiter = signal[0]
                    if waiter.done():
                        waiter = signal[0] = loop.create_future()
                    deadlines.add(waiter, deadline)
                    try:
                        await waiter
                    except TimeoutError:
                        timed_out = True
                        break
                    finally:
                        deadlines.discard(waiter)
                    continue
                for copy in done:
                    pending.remove(copy)
                    answer = self._settle(copy)
                    if isinstance(answer, AttemptFailed):
                        if answer.kind == "timeout":
                            timed_out = True
                        elif retries > 0 and spares:
                            retries -= 1
                            start(spares.pop(0))
                    elif answer.status >= 500:
                        if error is None:
                            error = copy
                        else:
                            answer.release()
                            copy.attempt.release()
                    elif winner is None:
                        winner = copy
                    else:  # answered in the same instant: a loser
                        self._lose(copy)
                if winner is not None:
                    break
                if hedge is not None and hedge.done():
                    hedge = None
                    if spares and self._try_hedge():
                        start(spares.pop(0))
        except BaseException:  # cancelled (the client left): the 5xx kept aside goes too
            if error is not None and error.resp is not None:
                error.resp.release()
                error.attempt.release()
            raise
        finally:
            if hedge is not None:
                hedge.cancel()
            for copy in pending:
                self._lose(copy)
        if winner is None:
            await self._best_error(out, rid, error, timed_out, started)
            return
        if error is not None and error.resp is not None:
            error.resp.release()
            error.attempt.release()
        assert winner.resp is not None
        replica = winner.attempt.replica
        replica.wins += 1
        try:
            await relay(out, winner.resp, rid, lambda: self._broken(replica))
        finally:
            winner.attempt.release()

    def _broken(self, replica: ReplicaState) -> None:
        replica.errors += 1
        self._up.report(replica.replica_id)

    async def _best_error(
        self, out: Connection, rid: bytes, error: _Copy | None, timed_out: bool, tried: int
    ) -> None:
        if error is not None and error.resp is not None:
            resp = error.resp
            try:
                body = await read_error_body(resp)
            finally:
                error.attempt.release()
            out.send(resp.status, resp.reason, downstream_lines(resp.head, rid=rid), body)
        elif timed_out:
            out.send_json(
                504, {"error": "replicas did not answer in time", "service": self._service}, rid
            )
        else:
            out.send_json(
                502, {"error": f"all {tried} replicas failed", "service": self._service}, rid
            )
