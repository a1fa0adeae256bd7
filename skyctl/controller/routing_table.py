"""A service's routing table: its one owner.

Every change to what the router may send requests to goes through here:

- the tick says which replicas *may* serve (:meth:`RoutingTable.set_candidates`:
  live, with an endpoint, not being terminated) and what the store knows of
  their readiness;
- a probe result changes a candidate's readiness at once (:meth:`probe`), so a
  replica that passes its probe is routable in that same loop iteration, not
  at the end of a tick, and one that fails leaves at once;
- during a blue-green update the tick also sets the plan's version gate
  (:class:`policies.model.Cutover`): the new version is routed, alone, the
  moment a probe makes its target count READY;
- a provider push signal removes a replica (:meth:`gone`: preempted, exited) or
  drains it (:meth:`notice`: an interruption notice; kept only while it is the
  last one serving).

Which of them are routed is :func:`policies.routable.routable`'s decision (the
one the plan makes too). The table is recomputed from those inputs and
published to the router only when it changed, and not before the first tick
gave the candidates (a restarted controller's empty table would otherwise
replace the one a router process kept serving); each published table has a
new :attr:`version`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from policies.model import Cutover, ReplicaView
from policies.routable import routable
from skyctl.lifecycle import ReplicaStatus
from skyctl.types import Backend

S = ReplicaStatus


class RoutingTable:
    def __init__(self, publish: Callable[[list[Backend]], None]) -> None:
        self._publish = publish
        self._backends: dict[int, Backend] = {}
        self._views: dict[int, ReplicaView] = {}  # as the store saw them, then probes and signals
        self._gone: set[int] = set()
        self._cutover: Cutover | None = None
        self.backends: list[Backend] = []
        self.version = 0
        self._seeded = False  # the tick gave candidates once: the table is known

    # -------------------------------------------------------------- inputs
    def set_candidates(
        self,
        candidates: Mapping[int, tuple[Backend, ReplicaView]],
        cutover: Cutover | None = None,
    ) -> None:
        """The replicas that may serve now (live, with an endpoint, not being
        terminated), each with its backend entry and its view as the store has it;
        ``cutover``: a blue-green update's version gate (None: none in progress)."""
        self._cutover = cutover
        self._backends = {rid: b for rid, (b, _) in candidates.items()}
        self._views = {rid: v for rid, (_, v) in candidates.items()}
        self._gone &= set(self._backends)
        first = not self._seeded
        self._seeded = True
        self._recompute(force=first)

    def add_candidate(self, backend: Backend, view: ReplicaView) -> None:
        """A replica that just started: it may serve once a probe passes."""
        if backend.replica_id not in self._backends:
            self._backends[backend.replica_id] = backend
            self._views[backend.replica_id] = view
            self._recompute()

    def probe(self, replica_id: int, ok: bool) -> None:
        view = self._views.get(replica_id)
        if view is None:
            return
        if ok and view.status is not S.READY:
            self._views[replica_id] = dataclasses.replace(view, status=S.READY)
        elif not ok and view.status is S.READY:
            self._views[replica_id] = dataclasses.replace(view, status=S.NOT_READY)
        else:
            return
        self._recompute()

    def gone(self, replica_id: int) -> None:
        """The replica cannot serve any more (preempted, exited, being terminated)."""
        self._gone.add(replica_id)
        self._recompute()

    def notice(self, replica_id: int, at: float) -> None:
        """An interruption notice: it serves only while it is the last one."""
        view = self._views.get(replica_id)
        if view is not None and view.interruption_at is None:
            self._views[replica_id] = dataclasses.replace(view, interruption_at=at)
            self._recompute()

    def is_gone(self, replica_id: int) -> bool:
        return replica_id in self._gone

    # ------------------------------------------------------------- output
    def _recompute(self, *, force: bool = False) -> None:
        if not self._seeded:
            return
        chosen_ids = routable(self._views.values(), excluded=self._gone, cutover=self._cutover)
        chosen = [self._backends[rid] for rid in chosen_ids]
        if chosen != self.backends or force:
            self.backends = chosen
            self.version += 1
            self._publish(chosen)
