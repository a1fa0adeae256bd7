"""What the store hands out: frozen records, never live database rows.

Every record is a plain frozen dataclass built from one row, so callers can
keep it, compare it and pass it across layers without touching the database
again. Times are epoch seconds (``float``) as the caller passed them in.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from skyctl.lifecycle import LIVE, EndReason, ReplicaStatus
from skyctl.types import Location


class ServiceStatus(str, enum.Enum):
    """A service's overall status, as ``serve status`` shows it."""

    CONTROLLER_INIT = "CONTROLLER_INIT"  # stored; the controller has not acted yet
    REPLICA_INIT = "REPLICA_INIT"  # replicas are being launched; none ready yet
    READY = "READY"  # at least one replica is routable
    NO_REPLICA = "NO_REPLICA"  # running, but no replica is up (e.g. all preempted)
    SHUTTING_DOWN = "SHUTTING_DOWN"  # serve down in progress
    FAILED = "FAILED"  # gave up (e.g. every launch failed for good)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ServiceRecord:
    name: str
    status: ServiceStatus
    current_version: int
    router_host: str
    router_port: int | None
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> ServiceRecord:
        return cls(
            name=row["name"],
            status=ServiceStatus(row["status"]),
            current_version=row["current_version"],
            router_host=row["router_host"],
            router_port=row["router_port"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


@dataclass(frozen=True)
class VersionRecord:
    service: str
    version: int
    yaml_text: str
    created_at: float
    source: str | None = None  # the file the spec was read from, when known
    secrets_ciphertext: str | None = None  # its secrets, encrypted (see skyctl.secrets)
    update_mode: str = "rolling"  # how it replaces older versions (serve update --mode)

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> VersionRecord:
        return cls(
            service=row["service"],
            version=row["version"],
            yaml_text=row["yaml_text"],
            created_at=row["created_at"],
            source=row["source"],
            secrets_ciphertext=row["secrets_ciphertext"],
            update_mode=row["update_mode"],
        )


@dataclass(frozen=True)
class ReplicaRecord:
    """One replica: where it runs, its life-cycle status and its timestamps.

    ``status_since`` is when the current status was entered; ``ready_at`` the
    first time it became READY; ``terminated_at`` when it reached TERMINATED.
    """

    service: str
    replica_id: int
    version: int
    status: ReplicaStatus
    end_reason: EndReason | None
    cloud: str
    region: str
    zone: str
    spot: bool
    price: float
    instance_type: str
    instance_id: str | None
    endpoint: str | None
    client_token: str
    created_at: float
    updated_at: float
    status_since: float
    ready_at: float | None
    terminated_at: float | None
    probe_failures: int
    interruption_at: float | None
    launch_attempts: int
    billed_from: float | None = None  # when its instance was first known: billing starts
    ondemand_price: float | None = None  # USD/h on demand for the same place and type
    exit_code: int | None = None  # the setup/run command's exit status, when it exited
    failure: str | None = None  # one line: how it failed
    log_tail: str | None = None  # the last lines of its log when it failed

    @property
    def location(self) -> Location:
        return Location(self.cloud, self.region, self.zone)

    @property
    def is_live(self) -> bool:
        """True while the replica may hold (or be about to hold) an instance."""
        return self.status in LIVE

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> ReplicaRecord:
        reason = row["end_reason"]
        return cls(
            service=row["service"],
            replica_id=row["replica_id"],
            version=row["version"],
            status=ReplicaStatus(row["status"]),
            end_reason=EndReason(reason) if reason is not None else None,
            cloud=row["cloud"],
            region=row["region"],
            zone=row["zone"],
            spot=bool(row["spot"]),
            price=row["price"],
            instance_type=row["instance_type"],
            instance_id=row["instance_id"],
            endpoint=row["endpoint"],
            client_token=row["client_token"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            status_since=row["status_since"],
            ready_at=row["ready_at"],
            terminated_at=row["terminated_at"],
            probe_failures=row["probe_failures"],
            interruption_at=row["interruption_at"],
            launch_attempts=row["launch_attempts"],
            billed_from=row["billed_from"],
            ondemand_price=row["ondemand_price"],
            exit_code=row["exit_code"],
            failure=row["failure"],
            log_tail=row["log_tail"],
        )


@dataclass(frozen=True)
class EventRecord:
    """A line of a service's history (``serve logs`` / ``status -v``)."""

    id: int
    service: str
    replica_id: int | None
    at: float
    kind: str
    message: str

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> EventRecord:
        return cls(
            id=row["id"],
            service=row["service"],
            replica_id=row["replica_id"],
            at=row["at"],
            kind=row["kind"],
            message=row["message"],
        )
