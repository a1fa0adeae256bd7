"""What the controller observes and what the policies decide (the contract).

``policies.reconcile.plan(observation, now) -> Plan`` is the one decision
function. The live controller and the simulator both build a
:class:`ServiceObservation`, call ``plan``, and carry out the :class:`Plan`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from skyctl.lifecycle import EndReason, ReplicaStatus
from skyctl.spec import ServiceSpec
from skyctl.types import Location, Offering


class LocationState(str, enum.Enum):
    """SpotHedge's view of a location for spot placement."""

    ACTIVE = "ACTIVE"
    PREEMPTED = "PREEMPTED"

    def __str__(self) -> str:
        return self.value


class LocationEventKind(str, enum.Enum):
    PREEMPTED = "PREEMPTED"  # a spot replica there was preempted
    CAPACITY_ERROR = "CAPACITY_ERROR"  # a spot launch there failed for capacity/quota
    LAUNCHED = "LAUNCHED"  # a spot launch there succeeded
    NOTICE = "NOTICE"  # an interruption notice arrived for a replica there


@dataclass(frozen=True)
class LocationEvent:
    kind: LocationEventKind
    location: Location
    at: float
    spot: bool = True


@dataclass(frozen=True)
class ReplicaView:
    """A replica as the policies see it (no provider handles, no store rows)."""

    replica_id: int
    version: int
    status: ReplicaStatus
    location: Location
    spot: bool
    price: float
    created_at: float  # when the launch was decided
    status_since: float  # when it entered ``status``
    ready_at: float | None = None  # first time it became READY
    probe_failures: int = 0  # consecutive failed probes
    interruption_at: float | None = None  # announced preemption time, if any
    unreachable: bool = False  # the provider said it is gone; not routable whatever its status


@dataclass(frozen=True)
class ReplicaEnded:
    """A replica that ended on its own (observed, not planned), since the previous plan.

    ``capacity`` marks a FAILED_PROVISION for capacity/quota or an open breaker:
    the location's fault, which placement handles, not the version's.
    """

    replica_id: int
    version: int
    reason: EndReason
    at: float
    exit_code: int | None = None  # the setup/run command's exit status, when known
    detail: str = ""  # one line: the provider's reason
    capacity: bool = False


@dataclass(frozen=True)
class ServiceObservation:
    service: str
    version: int  # the current (newest) version
    spec: ServiceSpec  # the current version's spec
    replicas: tuple[ReplicaView, ...]  # every replica whose status is not TERMINATED
    offerings: tuple[Offering, ...]  # what the provider(s) can launch now
    location_states: Mapping[Location, LocationState]  # persisted; missing = ACTIVE
    events: tuple[LocationEvent, ...] = ()  # since the previous plan, oldest first
    qps: float = 0.0  # requests per second over the recent window (from the router)
    policy_state: Mapping[str, Any] = field(default_factory=dict)  # from the previous Plan
    shutting_down: bool = False  # serve down in progress: plan terminates everything
    ended: tuple[ReplicaEnded, ...] = ()  # replicas that ended on their own since the last plan
    closed_locations: frozenset[Location] = frozenset()  # circuit breaker open: no launches there
    update_mode: str = "rolling"  # how the current version replaces older ones (policies.update)


@dataclass(frozen=True)
class Cutover:
    """A blue-green update in progress: ``version`` serves once ``target`` of it are READY
    (:func:`policies.routable.routable`)."""

    version: int
    target: int


@dataclass(frozen=True)
class Launch:
    offering: Offering
    version: int
    reason: str = ""  # human-readable, goes to the event log


@dataclass(frozen=True)
class Terminate:
    replica_id: int
    reason: EndReason
    detail: str = ""


@dataclass(frozen=True)
class Plan:
    launches: tuple[Launch, ...] = ()
    terminations: tuple[Terminate, ...] = ()
    location_states: Mapping[Location, LocationState] = field(default_factory=dict)
    policy_state: Mapping[str, Any] = field(default_factory=dict)  # JSON-serialisable
    target: int = 0  # total replicas wanted (incl. over-provisioning)
    spot_target: int = 0
    ondemand_target: int = 0
    notes: tuple[str, ...] = ()  # explanations for the event log
    routable: tuple[int, ...] = ()  # READY replicas the router should use, after this plan
    failure: str = ""  # non-empty: the current version is given up (service FAILED), why
    launch_after: float | None = None  # launches held back (failure backoff / hourly cap) until
    # a blue-green update in progress: the router's version gate (policies.routable.Cutover)
    cutover: Cutover | None = None
