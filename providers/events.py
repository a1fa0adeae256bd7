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
        self._told: dict[str, set[InstanceEventKind]] = {}  # instance id -> kinds told

    def push(self, inst: Instance, kind: InstanceEventKind, at: float) -> None:
        told = self._told.setdefault(inst.instance_id, set())
        if kind in told:
            return
        told.add(kind)
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
        self._told.pop(instance_id, None)

    def __len__(self) -> int:
        """Instances remembered."""
        return len(self._told)
