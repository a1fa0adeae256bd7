"""Passive health for one router: replicas ejected from routing after failures.

Exchanges tell each replica's :class:`~skyctl.router.stats.ReplicaState` how
a request went (``failed(reason)`` / ``answered()``); after
:data:`policies.outlier.CONSECUTIVE_FAILURES` failures in a row it calls
:meth:`Health.eject`, which takes it out of routing for a growing interval
(:func:`policies.outlier.ejection_seconds`) and tells the controller (the
``report`` callback: ``on_backend_error(replica_id, reason)``, which probes it
soon). :meth:`Health.routable` is the ready replicas minus the ejected ones;
an ejection ends by itself when its interval is over (the replica then gets
traffic again and is ejected for longer if it still fails).

Under the racing policies a copy that loses before its response head can run
on as a :class:`Check` (the rule: :mod:`policies.outlier`).
:meth:`Health.check` decides and starts one; the :class:`~skyctl.router.race.Race`
passes the copy's callbacks on to it. A check ends at its answer (a
streamed body is read to its end and discarded, so the connection is
reused; nothing of it reaches a client), at an error, or at the request
timeout (the race's deadline: the connection is closed), and tells its
replica how it went (``failed`` / ``answered``), so ejection, and telling
the controller, work as for any request. :meth:`Health.racing` leaves
replicas with a check in flight out of new races. :meth:`Health.stop_checks`
(the router stopping) and :meth:`Health.forget` (a replica leaving) cut
checks at once: a check is no client's request, nothing waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from policies import outlier
from skyctl.clock import Clock
from skyctl.router.client import UpstreamError
from skyctl.router.stats import ReplicaState

if TYPE_CHECKING:
    from skyctl.router.exchange import Context, Copy

log = logging.getLogger(__name__)


class Health:
    """The ejected replicas of one router (see the module docstring)."""

    def __init__(
        self, service: str, clock: Clock, report: Callable[[int, str], None] | None
    ) -> None:
        self.service = service
        self._clock = clock
        self._callback = report
        self.ejected: dict[int, ReplicaState] = {}  # empty: nothing to filter (the hot path)
        self.ejections = 0  # ever, for the metrics
        self.routable_count = 0  # replicas the router routes to (set with its backends)
        # checks in flight, by replica id (empty: nothing to filter, the hot path)
        self.checks: dict[int, Check] = {}
        self.checks_started = 0  # ever
        self._next_check: dict[int, float] = {}  # replica id -> clock time
        self._current: set[int] = set()  # routable replica ids

    def eject(self, state: ReplicaState, reason: str) -> None:
        now = self._clock.now()
        if state.ejected_until > now:
            return
        if state.ejected_until and outlier.forgiven(now - state.ejected_until, state.ejections):
            state.ejections = 0
        failures = state.consecutive
        state.consecutive = 0
        if not outlier.may_eject(len(self.ejected), self.routable_count):
            self._report(state.replica_id, f"{failures} consecutive failures ({reason}); kept")
            return
        state.ejections += 1
        seconds = outlier.ejection_seconds(state.ejections)
        state.ejected_until = now + seconds
        self.ejected[state.replica_id] = state
        self.ejections += 1
        log.warning(
            "router %s: replica %d out of routing for %.0f s after %d consecutive failures (%s)",
            self.service,
            state.replica_id,
            seconds,
            failures,
            reason,
        )
        self._report(
            state.replica_id,
            f"ejected for {seconds:.0f} s after {failures} consecutive failures ({reason})",
        )

    def _report(self, replica_id: int, reason: str) -> None:
        """Tell the controller (``on_backend_error``) about a replica."""
        if self._callback is None:
            return
        try:
            self._callback(replica_id, reason)
        except Exception:  # the controller's callback must never break a request
            log.exception("on_backend_error(%s) raised", replica_id)

    def routable(self, replicas: Sequence[ReplicaState]) -> list[ReplicaState]:
        """``replicas`` without the ejected ones (all of them if none would be left)."""
        now = self._clock.now()
        for rid, state in list(self.ejected.items()):
            if state.ejected_until <= now:
                del self.ejected[rid]
        if not self.ejected:
            return list(replicas)
        kept = [r for r in replicas if r.replica_id not in self.ejected]
        return kept or list(replicas)

    def forget(self, current: set[int]) -> None:
        """Replicas no longer routable leave the ejected set; their checks are cut.
        A replica new to routing counts as checked now: its readiness probe just
        passed (:func:`policies.outlier.next_check`)."""
        now = self._clock.now()
        for rid in current - self._current:
            self._next_check[rid] = outlier.next_check(now, answered=True)
        self._current = current
        for rid in [r for r in self.ejected if r not in current]:
            del self.ejected[rid]
        for rid in [r for r in self._next_check if r not in current]:
            del self._next_check[rid]
        for rid in [r for r in self.checks if r not in current]:
            self.checks[rid].stop()

    # -- checks (racing policies; see the module docstring)
    def check(self, copy: Copy, deadline: float, sample: bool) -> Check | None:
        """Run ``copy``, which lost a race before its response head, on as a check
        if one is due for its replica (:func:`policies.outlier.check_due`); else
        None (the caller cancels it). ``deadline``: the race's (loop time);
        ``sample``: add its time to the hedge-delay sample if it never answers."""
        replica = copy.replica
        rid = replica.replica_id
        if rid not in self._current:
            return None
        now = self._clock.now()
        if not outlier.check_due(rid in self.checks, now, self._next_check.get(rid, now)):
            return None
        check = Check(self, copy, copy.owner.ctx, deadline, sample)
        self.checks[rid] = check
        self.checks_started += 1
        return check

    def checked(self, check: Check, answered: bool | None) -> None:
        """``check`` is over: ``answered`` True or False sets when the next is due,
        None (cut by the router) leaves that as it was."""
        rid = check.replica.replica_id
        if self.checks.get(rid) is check:
            del self.checks[rid]
        if answered is not None and rid in self._current:
            self._next_check[rid] = outlier.next_check(self._clock.now(), answered)

    def racing(
        self, replicas: list[ReplicaState], ranked: list[ReplicaState] | None
    ) -> tuple[list[ReplicaState], list[ReplicaState] | None]:
        """``replicas`` (and ``ranked``, an order of them) without those with a check
        in flight, for a race (each unchanged if none would be left)."""
        checks = self.checks
        if not checks:  # the hot path
            return replicas, ranked
        kept = [r for r in replicas if r.replica_id not in checks] or replicas
        if ranked is not None:
            ranked = [r for r in ranked if r.replica_id not in checks] or ranked
        return kept, ranked

    def ejected_until(self, replicas: Sequence[ReplicaState]) -> dict[int, float]:
        """The replicas out of routing: id -> until (clock time)."""
        self.routable(replicas)  # ends the ejections that are over
        return {rid: state.ejected_until for rid, state in sorted(self.ejected.items())}

    async def stop_checks(self) -> None:
        """The router stops: cut every check (and wait for its tasks), start no more
        (until its next :meth:`forget`: the router's next ``set_backends``)."""
        self._current = set()
        tasks: list[asyncio.Task[None]] = []
        for check in list(self.checks.values()):
            tasks += check.tasks()
            check.stop()
        if tasks:
            await asyncio.wait(tasks)


class Check:
    """A copy that lost a race before its head, run on to see whether its replica
    answers at all (see the module docstring and :mod:`policies.outlier`).

    Its race passes it the copy's callbacks (:meth:`head`, :meth:`failed`); the
    race's deadline reaches it through :class:`~skyctl.router.deadlines.Deadlines`
    (``done`` / ``set_exception``).
    """

    __slots__ = ("_copy", "_ctx", "_health", "_reader", "_sample", "replica")

    def __init__(
        self, health: Health, copy: Copy, ctx: Context, deadline: float, sample: bool
    ) -> None:
        self._health = health
        self._copy: Copy | None = copy
        self._ctx = ctx
        self._sample = sample
        self._reader: asyncio.Task[None] | None = None
        self.replica = copy.replica
        ctx.upstream.pool.deadlines.add(self, deadline)

    def owns(self, copy: Copy) -> bool:
        return self._copy is copy

    def tasks(self) -> list[asyncio.Task[None]]:
        """Its tasks (reading the body, connecting), for :meth:`Health.stop_checks`."""
        copy = self._copy
        tasks = [self._reader, None if copy is None else copy.task]
        return [t for t in tasks if t is not None]

    def head(self) -> None:
        """The copy's response head is in: a 5xx fails, anything else answers."""
        copy = self._copy
        assert copy is not None and copy.resp is not None
        resp = copy.resp
        if resp.status >= 500:
            self.replica.failed("5xx")
            self._end(False)
            return
        self.replica.answered()
        if resp.body.complete:
            self._end(True)  # whole: its connection goes back to the pool
            return
        self._reader = self._ctx.loop.create_task(self._discard_body())

    async def _discard_body(self) -> None:
        copy = self._copy
        assert copy is not None and copy.resp is not None
        body = copy.resp.body
        try:
            while await body.read():
                pass
        except (UpstreamError, TimeoutError):
            self._reader = None
            self.replica.failed("stream broken")
            self._ctx.upstream.report(self.replica.replica_id, "stream broken")
            self._end(False)
            return
        self._reader = None
        self._end(True)

    def failed(self, exc: BaseException) -> None:
        """The copy failed before its head (the copy counted the failure); a
        connection error is reported to the controller, as for any request."""
        self._ctx.upstream.failure(self.replica, exc)
        self._lower_bound()
        self._copy = None  # released by the copy itself
        self._end(False)

    # -- the race's deadline (an Expirable for Deadlines)
    def done(self) -> bool:
        return self._copy is None

    def set_exception(self, exc: BaseException) -> None:
        """The request timeout passed: without a head, a timeout (a failure); while
        its body is read, cut (it answered: a success, checked again an interval on)."""
        if self._reader is None:
            self.replica.failed("timeout")
            self._lower_bound()
            self._end(False)
        else:
            self._end(True)

    def stop(self) -> None:
        """Cut it, no verdict (the router stops, the replica left)."""
        self._end(None)

    def _lower_bound(self) -> None:
        """A hedged race's first copy that never answered: its time so far is a
        lower bound of its latency, for the hedge delay (as race.py's losers)."""
        copy = self._copy
        if self._sample and copy is not None:
            self._ctx.latency.add(self._ctx.clock.now() - copy.started)

    def _end(self, answered: bool | None) -> None:
        ctx = self._ctx
        ctx.upstream.pool.deadlines.discard(self)
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
        copy, self._copy = self._copy, None
        if copy is not None:
            copy.drop()  # its connection closes unless the answer arrived whole
        self._health.checked(self, answered)
