"""Fan-out and hedging: send one request to several replicas, keep the first good answer.

A :class:`Race` starts attempts on replicas (all ``k`` at once for
``fan_out``; one, then a hedge after a delay, for ``hedge``) and waits:

- the first response that is not a 5xx wins, as soon as its headers arrive
  (for a streamed response the router commits to that replica);
- every other attempt is cancelled: a pending one has its connection closed
  by the cancellation, one that already has headers is closed, never returned
  to the pool half-read; the replica sees the disconnect;
- a connection error starts a replacement on an untried replica while
  ``retries`` allow;
- when every attempt failed, or the overall deadline passed, the best error
  is answered: a replica's own 5xx first, then 504 for a timeout, then 502.

The hedge delay runs on the injected clock; the overall deadline, like the
socket timeouts, on the event loop's time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from skyctl.clock import Clock
from skyctl.router.client import Response
from skyctl.router.front import Connection, Request
from skyctl.router.headers import downstream_lines
from skyctl.router.stats import Attempt, ReplicaState, Reservoir
from skyctl.router.upstream import AttemptFailed, Upstream, read_error_body, relay


@dataclass
class _Outcome:
    attempt: Attempt
    resp: Response | None = None  # a winner candidate (status < 500)
    error_status: int = 0  # a replica's 5xx
    error_reason: bytes = b""
    error_lines: bytes = b""
    error_body: bytes = b""
    failure: AttemptFailed | None = None


@dataclass(frozen=True)
class RacePlan:
    """What to race: replicas to start at once, spares for hedges and retries."""

    first: Sequence[ReplicaState]
    spares: Sequence[ReplicaState]
    hedge_delay: float | None = None  # None: no hedge
    retries: int = 0
    deadline: float = 300.0


def _discard(outcome: _Outcome) -> None:
    """A losing answer: its connection goes back to the pool only if it arrived whole."""
    if outcome.resp is not None:
        outcome.resp.release()
        outcome.attempt.replica.cancelled += 1
        outcome.attempt.release()


def _discard_task(task: asyncio.Task[_Outcome]) -> None:
    """Done-callback of an attempt cancelled too late: drop the answer it got."""
    if not task.cancelled() and task.exception() is None:
        _discard(task.result())


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

    async def _attempt(
        self,
        attempt: Attempt,
        request: Request,
        rid: bytes,
        lines: bytes,
        body: bytes,
    ) -> _Outcome:
        replica = attempt.replica
        head = request.head
        started = self._clock.now()
        length = None if head.content_length is None and not head.chunked else len(body)
        try:
            resp = await self._up.open(replica, head.method, head.target, lines, body, None, length)
        except AttemptFailed as exc:
            replica.errors += 1
            attempt.release()
            return _Outcome(attempt, failure=exc)
        except BaseException:
            attempt.release()
            raise
        elapsed = self._clock.now() - started
        replica.latency.add(elapsed)
        self._latency.add(elapsed)
        if resp.status >= 500:
            replica.errors += 1
            try:
                error_body = await read_error_body(resp)
            finally:
                attempt.release()
            return _Outcome(
                attempt,
                error_status=resp.status,
                error_reason=resp.reason,
                error_lines=downstream_lines(resp.head, rid=rid),
                error_body=error_body,
            )
        return _Outcome(attempt, resp=resp)

    async def run(
        self,
        request: Request,
        out: Connection,
        rid: bytes,
        plan: RacePlan,
        lines: bytes,
        body: bytes,
    ) -> None:
        spares = list(plan.spares)
        retries = plan.retries
        attempts: list[Attempt] = []
        pending: dict[asyncio.Task[_Outcome], Attempt] = {}

        def start(replica: ReplicaState) -> None:
            attempt = Attempt(replica)
            attempts.append(attempt)
            task = asyncio.ensure_future(self._attempt(attempt, request, rid, lines, body))
            pending[task] = attempt

        for replica in plan.first:
            start(replica)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + plan.deadline  # a socket-level deadline, on the loop's time
        hedge: asyncio.Future[None] | None = None
        if plan.hedge_delay is not None and spares:
            hedge = asyncio.ensure_future(self._clock.sleep(plan.hedge_delay))
        winner: _Outcome | None = None
        first_error: _Outcome | None = None
        timed_out = False
        try:
            while pending:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    timed_out = True
                    break
                waiting: set[asyncio.Future[Any]] = set(pending)
                if hedge is not None:
                    waiting.add(hedge)
                done, _ = await asyncio.wait(
                    waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                for task in [t for t in pending if t in done]:
                    del pending[task]
                    outcome = task.result()
                    if outcome.resp is not None:
                        if winner is None:
                            winner = outcome
                        else:  # answered in the same instant: a loser
                            _discard(outcome)
                    elif outcome.failure is not None:
                        if outcome.failure.kind == "timeout":
                            timed_out = True
                        elif retries > 0 and spares:
                            retries -= 1
                            start(spares.pop(0))
                    elif first_error is None:
                        first_error = outcome
                if winner is not None:
                    break
                if hedge is not None and hedge in done:
                    hedge = None
                    if spares and self._try_hedge():
                        start(spares.pop(0))
        finally:
            if hedge is not None:
                hedge.cancel()
            for task, attempt in pending.items():
                if task.cancel():  # still waiting: the cancellation closes its connection
                    attempt.replica.cancelled += 1
                task.add_done_callback(_discard_task)
            if pending:
                await asyncio.wait(pending)
            if winner is None:
                for attempt in attempts:
                    attempt.release()
        if winner is None:
            self._best_error(out, rid, first_error, timed_out, len(attempts))
            return
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

    def _best_error(
        self, out: Connection, rid: bytes, error: _Outcome | None, timed_out: bool, tried: int
    ) -> None:
        if error is not None:
            out.send(error.error_status, error.error_reason, error.error_lines, error.error_body)
        elif timed_out:
            out.send_json(
                504, {"error": "replicas did not answer in time", "service": self._service}, rid
            )
        else:
            out.send_json(
                502, {"error": f"all {tried} replicas failed", "service": self._service}, rid
            )
