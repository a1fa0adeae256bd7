"""Plain value types shared by every layer (frozen dataclasses, no I/O)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class Location:
    """A failure domain that can host instances: ``cloud/region/zone``.

    ``zone`` is empty for providers whose unit is a region or a cluster
    (a Kubernetes context is ``kubernetes/<context>/``).
    """

    cloud: str
    region: str
    zone: str = ""

    def __str__(self) -> str:
        if self.zone:
            return f"{self.cloud}/{self.region}/{self.zone}"
        if "/" in self.region:  # e.g. an EKS context ARN: a trailing "/" keeps it one piece
            return f"{self.cloud}/{self.region}/"
        return f"{self.cloud}/{self.region}"

    @classmethod
    def parse(cls, text: str) -> Location:
        """The inverse of ``str()``. Clouds and zones never contain "/"; a region
        (a Kubernetes context) may, and is then written with a trailing "/"."""
        cloud, sep, rest = text.partition("/")
        if not cloud or not sep or not rest.strip("/") or rest.startswith("/"):
            raise ValueError(f"not a location (cloud/region[/zone]): {text!r}")
        if rest.endswith("/"):
            return cls(cloud, rest[:-1], "")
        region, sep, zone = rest.rpartition("/")
        if not sep:
            return cls(cloud, rest, "")
        return cls(cloud, region, zone)


@dataclass(frozen=True)
class Offering:
    """Something a provider can launch: where, spot or not, what type, at what price."""

    location: Location
    spot: bool
    price: float  # USD per hour
    instance_type: str = ""
    accelerators: str = ""  # e.g. "V100:1", for instance-aware routing and display


class InstanceState(str, enum.Enum):
    """What the provider says about an instance."""

    PENDING = "PENDING"  # being created
    RUNNING = "RUNNING"
    PREEMPTED = "PREEMPTED"  # taken away by the cloud (spot interruption, eviction)
    TERMINATED = "TERMINATED"  # deleted, or being deleted, for another reason
    FAILED = "FAILED"  # crashed, could not start, or stopped (it stays until terminated)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Instance:
    """An instance as the provider reports it.

    ``interruption_at`` is the announced time (epoch seconds) of a coming
    preemption when the cloud gave notice; ``None`` otherwise.

    ``launch_failed`` (with state FAILED): the instance never finished being
    created (its provisioning failed, or a launch cut short left only part of
    it); the controller ends its replica FAILED_PROVISION, never PREEMPTED.
    """

    instance_id: str
    service: str
    replica_id: int
    version: int
    location: Location
    spot: bool
    state: InstanceState
    endpoint: str | None = None  # "http://host:port"
    price: float = 0.0
    created_at: float = 0.0
    interruption_at: float | None = None
    detail: str = ""
    launch_failed: bool = False


class InstanceEventKind(str, enum.Enum):
    NOTICE = "NOTICE"  # interruption announced; instance still runs until ``at``
    PREEMPTED = "PREEMPTED"  # the instance was taken away
    EXITED = "EXITED"  # the instance/process ended on its own


@dataclass(frozen=True)
class InstanceEvent:
    """A push signal from a provider: something happened to an instance."""

    kind: InstanceEventKind
    service: str
    replica_id: int
    instance_id: str
    location: Location
    at: float  # when it happened, or for NOTICE when the kill is due
    detail: str = ""


@dataclass(frozen=True)
class Backend:
    """A routable replica as the router sees it."""

    replica_id: int
    url: str  # "http://host:port"
    location: Location
    spot: bool = True
    accelerators: str = ""
    version: int = 1
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
