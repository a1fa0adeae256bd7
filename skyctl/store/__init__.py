"""The state store: every durable fact the controller keeps, in one SQLite file.

``from skyctl.store import Store, ServiceStatus, ReplicaRecord`` is all most
callers need; see :mod:`skyctl.store.store` for the API and
:mod:`skyctl.store.migrations` for how the schema evolves.
"""

from __future__ import annotations

from skyctl.store.intents import ReplicaIntent
from skyctl.store.migrations import LATEST as SCHEMA_VERSION
from skyctl.store.records import (
    EventRecord,
    ReplicaRecord,
    ServiceRecord,
    ServiceStatus,
    VersionRecord,
)
from skyctl.store.store import REPLICA_FIELDS, Store

__all__ = [
    "REPLICA_FIELDS",
    "SCHEMA_VERSION",
    "EventRecord",
    "ReplicaIntent",
    "ReplicaRecord",
    "ServiceRecord",
    "ServiceStatus",
    "Store",
    "VersionRecord",
]
