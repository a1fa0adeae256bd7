"""Fan-out and hedging: send one request to several replicas, keep the first good answer.

A :class:`Race` is an :class:`~skyctl.router.exchange.Exchange` that sends
copies of a request to replicas (all ``k`` at once for ``fan_out``; one,
then a hedge after a delay, for ``hedge``) and settles, from the copies'
callbacks:

- the first response that is not a 5xx wins, as soon as its headers arrive
  (for a streamed response the router commits to that replica); the race is
  decided once the event loop has run the other callbacks of the same
  instant, so answers that arrived together are all read first;
- every other copy loses: one whose answer already arrived whole keeps its
  connection, back in the pool; one half-read is closed, never returned to
  the pool; one still in flight is cancelled, which closes its connection
  (the replica sees the disconnect), once the event loop has looked at its
  sockets one more time: an answer already on its way is read instead of
  thrown away with its connection (see below); unless passive health wants
  it to run on as a check (:meth:`~skyctl.router.health.Health.check`, the
  rule in :mod:`policies.outlier`): its callbacks then go to the check, its
  answer to no client;
- a connection error starts a replacement on an untried replica while
  ``retries`` allow;
- when every copy failed, or the overall deadline passed, the best error is
  answered: a replica's own 5xx first, then 504 for a timeout, then 502.

Why losers in flight get one more look: under load the losing answer is
often a few microseconds behind the winner's, already in the socket or
arriving with the next poll. Cutting it then wastes the work already done
and costs a new connection for a later request (a TCP handshake, with TLS a
full one): in the router benchmark 47 of every 1,000 fan-out requests
paid that. Waiting one event-loop iteration (no timer, no delay for the
client, who has the winner's answer already) leaves 0.3 to 0.5 per 1,000;
the replica still sees the cancellation of a real straggler, one iteration
later.

The hedge delay is the P95 of the service's recent header latencies. A copy
cancelled because a hedge won never reports its latency, so without care
the slowest copies would vanish from the sample, the P95 would fall, and
more requests would pass it than the 5% it promises, spending the hedge
budget on requests that were merely a little slow (measured: 14% of
requests wanting a hedge, the budget dry, and unhedged 500 ms requests at
P99.9). So a loser of a hedged race adds the time it had run as a sample: a
lower bound of its latency, which ranks it correctly above the P95 (the
first copy only: a hedge that lost started late, its time says nothing).

A hedge that finds the budget dry is asked for again after twice the wait,
then four times, and so on while the request is still outstanding: a burst
of merely late requests that empties the budget no longer leaves the truly
slow one behind it unhedged. Hedges stay within the budget either way.

``on_send`` (cache_aware) is told of every copy as it goes out (the first ones,
a hedge, a retry's replacement): each replica sent the prompt becomes a holder
of its prefix, so the one that answers is one, whichever copy won; ``on_fail``
of every copy that fails before the race is decided (a 5xx, a connection
error, a timeout): that replica holds nothing of it.

Copies go out at once on idle pooled connections, with no task; only a copy
that must connect first, the hedge timer and a streamed relay run as tasks.
The hedge delay runs on the injected clock; the overall deadline, like the
socket timeouts, on the event loop's time (checked with the other deadlines).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from policies import routing
from skyctl.router.exchange import Call, Copy, Exchange
from skyctl.router.health import Check, Health
from skyctl.router.hedging import Hedging
from skyctl.router.stats import ReplicaState
from skyctl.router.upstream import ERROR_BODY_LIMIT, read_error_body
from skyctl.spec import RouterOptions


class RacePlan:
    """What to race: replicas to start at once, spares for hedges and retries
    (a plain class, built by a C call when compiled; see :class:`Call`)."""

    __slots__ = ("deadline", "first", "hedge_delay", "retries", "spares")

    def __init__(
        self,
        first: Sequence[ReplicaState],
        spares: Sequence[ReplicaState],
        hedge_delay: float | None = None,  # None: no hedge
        retries: int = 0,
        deadline: float = 300.0,
    ) -> None:
        self.first = first
        self.spares = spares
        self.hedge_delay = hedge_delay
        self.retries = retries
        self.deadline = deadline


def plan_race(
    kind: str,
    opts: RouterOptions,
    replicas: list[ReplicaState],
    ranked: list[ReplicaState] | None,
    cursor: int,
    health: Health,
    hedging: Hedging,
) -> tuple[RacePlan, int]:
    """The plan of a ``kind`` race (fan_out or hedge) over ``replicas`` (``ranked``:
    an order already chosen, by cache_aware), and the router's next cursor."""
    replicas, ranked = health.racing(replicas, ranked)  # none being checked
    if ranked is None:
        if kind == routing.FAN_OUT and opts.fan_out >= len(replicas):
            ranked = replicas  # every replica gets a copy: no ranking to do
        else:
            locations = [r.backend.location for r in replicas]
            loads = [float(r.in_flight) for r in replicas]
            order = routing.pick_diverse(locations, loads, len(replicas), cursor)
            cursor += 1
            ranked = [replicas[i] for i in order]
    if kind == routing.FAN_OUT:
        k = max(1, min(opts.fan_out, len(ranked)))
        plan = RacePlan(
            first=ranked[:k],
            spares=ranked[k:],
            retries=opts.retries,
            deadline=opts.request_timeout_seconds,
        )
        return plan, cursor
    hedging.earn(opts.hedge_budget)
    plan = RacePlan(
        first=ranked[:1],
        spares=ranked[1:],
        hedge_delay=hedging.delay(opts.hedge_delay_seconds),
        retries=opts.retries,
        deadline=opts.request_timeout_seconds,
    )
    return plan, cursor


class Race(Exchange):
    """One request raced over several replicas (see the module docstring)."""

    __slots__ = (
        "_body",
        "_checks",
        "_deadline",
        "_error",
        "_error_read",
        "_first",
        "_hedge",
        "_hedge_wait",
        "_initial",
        "_length",
        "_lingering",
        "_on_fail",
        "_on_send",
        "_pending",
        "_plan",
        "_retries",
        "_sent",
        "_spares",
        "_timed_out",
        "_try_hedge",
        "_winner",
    )

    def __init__(
        self,
        call: Call,
        *,
        plan: RacePlan,
        body: bytes,
        try_hedge: Callable[[], bool],
        on_send: Callable[[ReplicaState], None] | None = None,
        on_fail: Callable[[ReplicaState], None] | None = None,
    ) -> None:
        super().__init__(call.ctx, call.out, call.request, call.rid, call.lines)
        self._on_send = on_send
        self._on_fail = on_fail
        self._plan = plan
        self._body = body
        head = call.request.head
        self._length = None if head.content_length is None and not head.chunked else len(body)
        self._try_hedge = try_hedge
        self._spares = list(plan.spares)
        self._retries = plan.retries
        self._pending: list[Copy] = []
        self._lingering: list[Copy] | None = None  # losers in flight, cut next iteration
        self._sent = 0
        self._error: Copy | None = None  # the first replica 5xx
        self._winner: Copy | None = None  # decided at the end of this loop iteration
        self._timed_out = False
        self._hedge: asyncio.Task[None] | None = None
        self._hedge_wait = 0.0  # the last hedge delay waited (doubles while the budget is dry)
        self._error_read: asyncio.Task[None] | None = None
        self._first: Copy | None = None  # a hedged race's first copy
        self._initial: list[Copy] = []  # the copies sent at the start (not hedges, retries)
        self._checks: list[Check] | None = None  # losers run on as checks (passive health)
        self._deadline = 0.0  # loop time

    def start(self) -> None:
        plan = self._plan
        deadlines = self.ctx.upstream.pool.deadlines
        self._deadline = self.ctx.loop.time() + plan.deadline
        deadlines.add(self, self._deadline)
        for replica in plan.first:
            self._send(replica)
        self._first = self._pending[0] if self._pending else None
        self._initial = list(self._pending)
        if plan.hedge_delay is not None and self._spares and not self.over:
            self._hedge_after(plan.hedge_delay)

    def _hedge_after(self, delay: float) -> None:
        self._hedge_wait = delay
        self._hedge = self.ctx.loop.create_task(self.ctx.clock.sleep(delay))
        self._hedge.add_done_callback(self._hedge_due)

    def _send(self, replica: ReplicaState) -> None:
        self._sent += 1
        if self._on_send is not None:
            self._on_send(replica)
        self._pending.append(Copy(self, replica, self._body, self._length, None))

    # -- the overall deadline (an Expirable for Deadlines)
    def done(self) -> bool:
        return self.over

    def set_exception(self, exc: BaseException) -> None:
        if self._winner is None:  # else the winner is decided in this very iteration
            self._timed_out = True
            for copy in self._pending:  # no answer in the whole request timeout: a timeout
                if copy in self._initial:  # (passive health; a later hedge had less time)
                    copy.replica.failed("timeout")
            self._settle(None)

    def _hedge_due(self, task: asyncio.Task[None]) -> None:
        self._hedge = None
        if self.over or task.cancelled() or not self._spares:
            return
        if self._try_hedge():
            self._send(self._spares.pop(0))
        elif self._hedge_wait > 0:  # the budget is dry: ask again later, while still waiting
            self._hedge_after(self._hedge_wait * 2)

    # -- copies
    def copy_head(self, copy: Copy) -> None:
        checks = self._checks
        if checks is not None:
            for check in checks:
                if check.owns(copy):
                    check.head()
                    return
        lingering = self._lingering
        if lingering is not None and copy in lingering:  # a loser, answering in time
            lingering.remove(copy)
            # counted as a loser answering in the same instant is (below)
            if copy.resp is not None and copy.resp.status >= 500:
                copy.replica.failed("5xx")
            else:
                copy.replica.cancelled += 1
                copy.replica.answered()
            copy.drop()  # its connection stays if the answer arrived whole
            return
        self._pending.remove(copy)
        resp = copy.resp
        assert resp is not None
        if resp.status < 500:
            copy.replica.answered()
            if self._winner is None:
                copy.replica.wins += 1
                self._winner = copy
                self.ctx.upstream.pool.batch.soon(self._decide)
            else:  # answered in the same instant: a loser, whose answer may be whole
                copy.replica.cancelled += 1
                copy.drop()
            return
        copy.replica.failed("5xx")
        if self._on_fail is not None:
            self._on_fail(copy.replica)
        if self._error is None:
            self._error = copy
        else:
            copy.drop()
        if not self._pending and self._winner is None:
            self._settle(None)

    def copy_failed(self, copy: Copy, exc: BaseException) -> None:
        checks = self._checks
        if checks is not None:
            for check in checks:
                if check.owns(copy):
                    check.failed(exc)
                    return
        lingering = self._lingering
        if lingering is not None and copy in lingering:  # a loser: nothing more to do
            lingering.remove(copy)
            return
        self._pending.remove(copy)
        if self._on_fail is not None:
            self._on_fail(copy.replica)
        failure = self.ctx.upstream.failure(copy.replica, exc)
        if failure.kind == "timeout":
            self._timed_out = True
        elif self._retries > 0 and self._spares and self._winner is None:
            self._retries -= 1
            self._send(self._spares.pop(0))
        if not self._pending and self._winner is None:
            self._settle(None)

    def _decide(self) -> None:
        winner, self._winner = self._winner, None
        if winner is not None and not self.over:
            try:
                self._settle(winner)
            except Exception as exc:  # a bug of ours: answer 500, release everything
                winner.drop()
                self.crash(exc)

    def _settle(self, winner: Copy | None) -> None:
        """The race is decided: losers go, then the winner's answer or the best error."""
        self.ctx.upstream.pool.deadlines.discard(self)
        self._stop_racing(linger=winner is not None)
        error, self._error = self._error, None
        if winner is not None:
            if error is not None:
                error.drop()
            self.deliver(winner)
        elif error is not None:
            self._answer_error(error)
        elif self._timed_out:
            self.send_json(504, {"error": "replicas did not answer in time"})
        else:
            self.send_json(502, {"error": f"all {self._sent} replicas failed"})

    def _stop_racing(self, linger: bool = False) -> None:
        """The losers go; with ``linger``, those sent and in flight go at the next
        iteration, unless their answer comes in first (module docstring)."""
        hedge, self._hedge = self._hedge, None
        if hedge is not None:
            hedge.cancel()
        pending, self._pending = self._pending, []
        for copy in pending:
            if linger and copy.task is None:  # sent (not still connecting)
                if self._lingering is None:
                    self._lingering = []
                    self.ctx.loop.call_soon(self._cut_lingering)
                self._lingering.append(copy)
            elif not (linger and self._check(copy)):
                self._cut(copy)

    def _cut_lingering(self, check: bool = True) -> None:
        lingering, self._lingering = self._lingering, None
        for copy in lingering or ():
            if not (check and self._check(copy)):
                self._cut(copy)

    def _check(self, copy: Copy) -> bool:
        """Whether a loser without its head runs on as a check (passive health)."""
        health = self.ctx.health
        if health is None:
            return False
        sample = copy is self._first and self._plan.hedge_delay is not None
        check = health.check(copy, self._deadline, sample)
        if check is None:
            return False
        if self._checks is None:
            self._checks = []
        self._checks.append(check)
        return True

    def _cut(self, copy: Copy) -> None:
        """Cancel a losing copy (its connection closes unless the answer arrived whole)."""
        copy.replica.cancelled += 1
        copy.drop()
        if copy is self._first and self._plan.hedge_delay is not None:
            # a hedged race's first copy would have taken at least this long (module docstring)
            self.ctx.latency.add(self.ctx.clock.now() - copy.started)

    def _answer_error(self, copy: Copy) -> None:
        """Pass on a replica's 5xx with (up to 64 KiB of) its body."""
        resp = copy.resp
        assert resp is not None
        if resp.body.complete:
            self.send_whole(copy, resp.body.take()[:ERROR_BODY_LIMIT])
            return
        self._error_read = self.ctx.loop.create_task(self._read_error(copy))

    async def _read_error(self, copy: Copy) -> None:
        resp = copy.resp
        assert resp is not None
        try:
            body = await read_error_body(resp)
        except BaseException:
            copy.drop()
            raise
        finally:
            self._error_read = None
        self.send_whole(copy, body)

    def _drop_all(self) -> None:
        self.ctx.upstream.pool.deadlines.discard(self)
        self._stop_racing()
        self._cut_lingering(check=False)
        winner, self._winner = self._winner, None
        if winner is not None:
            winner.drop()
        error, self._error = self._error, None
        if error is not None:
            error.drop()
        read, self._error_read = self._error_read, None
        if read is not None:
            read.cancel()

    def _copy_tasks(self) -> list[asyncio.Task[None] | None]:
        return [self._hedge, self._error_read, *(c.task for c in self._pending)]
