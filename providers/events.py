"""Instance events, each pushed once: providers learn the same fact on every poll.

A cloud reports a preempted instance (or its interruption notice) again on every
list or watch event until it is gone; the controller wants to hear of it once.
"""

from __future__ import annotations

from collections.abc import Callable

from skyctl.types import Instance, InstanceEvent, InstanceEventKind


class EventsOnce:
    """Pushes ``(instance, kind)`` events at most once each."""

    def __init__(self, emit: Callable[[InstanceEvent], None]) -> None:
        self._emit = emit
        self._told: set[tuple[str, InstanceEventKind]] = set()

    def push(self, inst: Instance, kind: InstanceEventKind, at: float) -> None:
        key = (inst.instance_id, kind)
        if key in self._told:
            return
        self._told.add(key)
        self._emit(
            InstanceEvent(
                kind,
                inst.service,
                inst.replica_id,
                inst.instance_id,
                inst.location,
                at,
                inst.detail,
            )
        )

    def forget(self, instance_id: str) -> None:
        """The instance is ours to end now: nothing more to tell of it (bounded memory)."""
        self._told = {k for k in self._told if k[0] != instance_id}
