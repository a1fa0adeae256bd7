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
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from policies import outlier
from skyctl.clock import Clock
from skyctl.router.stats import ReplicaState

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
        """Replicas no longer routable leave the ejected set."""
        for rid in [r for r in self.ejected if r not in current]:
            del self.ejected[rid]
