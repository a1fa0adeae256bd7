"""The replica life cycle: an explicit state machine.

Every status change of a replica goes through :func:`transition`; the allowed
moves are the table :data:`TRANSITIONS`, and nowhere else.

::

    PENDING ──> PROVISIONING ──> STARTING ──> READY <──> NOT_READY
       │             │               │          │           │
       └─────────────┴───────────────┴──────────┴───────────┴──> SHUTTING_DOWN ──> TERMINATED

Any live status may also go straight to TERMINATED when the instance is found
gone (a preemption the provider already carried out, a failed launch).
Why a replica ended is its :class:`EndReason`, recorded with the move to
SHUTTING_DOWN or TERMINATED: PREEMPTED and the FAILED_* kinds are reasons, not
statuses, so the machine stays small. :data:`FAILURES` are the reasons that
count against a version (``policies.failures``: backoff, service FAILED).
"""

from __future__ import annotations

import enum

from skyctl.errors import InvalidTransition


class ReplicaStatus(str, enum.Enum):
    PENDING = "PENDING"  # decided, intent recorded, no provider call yet
    PROVISIONING = "PROVISIONING"  # launch call in flight
    STARTING = "STARTING"  # instance exists; waiting for the first good probe
    READY = "READY"  # probes pass; routable
    NOT_READY = "NOT_READY"  # was ready; probes failing now
    SHUTTING_DOWN = "SHUTTING_DOWN"  # terminate call in flight
    TERMINATED = "TERMINATED"  # gone; terminal

    def __str__(self) -> str:
        return self.value


class EndReason(str, enum.Enum):
    PREEMPTED = "PREEMPTED"  # the cloud took a spot instance away
    FAILED_PROVISION = "FAILED_PROVISION"  # the launch failed
    FAILED_INITIAL_DELAY = "FAILED_INITIAL_DELAY"  # never passed a probe within the delay
    FAILED_PROBING = "FAILED_PROBING"  # too many failed probes after being ready
    FAILED = "FAILED"  # the process/instance died on its own (the run command exited)
    FAILED_SETUP = "FAILED_SETUP"  # the spec's setup command exited non-zero
    SCALED_DOWN = "SCALED_DOWN"  # the autoscaler or fallback drained it
    UPDATED = "UPDATED"  # replaced by a newer version
    USER = "USER"  # serve down
    ORPHAN = "ORPHAN"  # garbage-collected instance unknown to the store

    def __str__(self) -> str:
        return self.value


S = ReplicaStatus

#: End reasons that count against the replica's version: its own fault, not the
#: cloud's (PREEMPTED) nor a decision (SCALED_DOWN, UPDATED, USER, ORPHAN).
FAILURES: frozenset[EndReason] = frozenset(
    {
        EndReason.FAILED,
        EndReason.FAILED_SETUP,
        EndReason.FAILED_PROVISION,
        EndReason.FAILED_INITIAL_DELAY,
        EndReason.FAILED_PROBING,
    }
)

TRANSITIONS: dict[ReplicaStatus, frozenset[ReplicaStatus]] = {
    S.PENDING: frozenset({S.PROVISIONING, S.SHUTTING_DOWN, S.TERMINATED}),
    S.PROVISIONING: frozenset({S.STARTING, S.SHUTTING_DOWN, S.TERMINATED}),
    S.STARTING: frozenset({S.READY, S.SHUTTING_DOWN, S.TERMINATED}),
    S.READY: frozenset({S.NOT_READY, S.SHUTTING_DOWN, S.TERMINATED}),
    S.NOT_READY: frozenset({S.READY, S.SHUTTING_DOWN, S.TERMINATED}),
    S.SHUTTING_DOWN: frozenset({S.TERMINATED}),
    S.TERMINATED: frozenset(),
}

LIVE: frozenset[ReplicaStatus] = frozenset(s for s in ReplicaStatus if s is not S.TERMINATED)
"""Statuses that may still hold (or be about to hold) a provider instance."""

UP: frozenset[ReplicaStatus] = frozenset(
    {S.PENDING, S.PROVISIONING, S.STARTING, S.READY, S.NOT_READY}
)
"""Statuses that count towards the service's replica target."""

ROUTABLE: frozenset[ReplicaStatus] = frozenset({S.READY})
"""Statuses the router may send traffic to."""

#: Statuses whose move out must carry an :class:`EndReason`.
ENDING: frozenset[ReplicaStatus] = frozenset({S.SHUTTING_DOWN, S.TERMINATED})


def can_transition(old: ReplicaStatus, new: ReplicaStatus) -> bool:
    return new in TRANSITIONS[old]


def transition(
    old: ReplicaStatus, new: ReplicaStatus, reason: EndReason | None = None
) -> ReplicaStatus:
    """Validate a move; return ``new``.

    Raises :class:`InvalidTransition` for a move not in the table, or for a move
    into SHUTTING_DOWN/TERMINATED without a reason (unless already shutting down,
    which carries its reason already).
    """
    if new not in TRANSITIONS[old]:
        raise InvalidTransition(f"replica cannot go from {old} to {new}")
    if new in ENDING and reason is None and old is not S.SHUTTING_DOWN:
        raise InvalidTransition(f"moving to {new} needs an end reason")
    return new
