"""Launch intents recorded in bulk: a burst of launches in a few statements.

A tick that launches N replicas records N PENDING rows and N "launch"
events in its one transaction. Row by row that is about a dozen statements
per replica (the service's row, the version, the token, the id counter, the
insert, the read back, the event); :func:`insert_replicas` checks once, takes
N ids at once and inserts with one ``executemany``, whatever N is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select, update

from skyctl.errors import ServiceNotFound
from skyctl.lifecycle import ReplicaStatus
from skyctl.store import schema as t
from skyctl.store import statements as q
from skyctl.store.records import ReplicaRecord
from skyctl.types import Location

CHUNK = 500  # tokens per IN (...) list: far below SQLite's bound on variables


@dataclass(frozen=True)
class ReplicaIntent:
    """One replica to launch: where, at what price, under which client token."""

    version: int
    location: Location
    spot: bool
    price: float
    instance_type: str
    client_token: str
    ondemand_price: float | None = None  # USD/h on demand for the same place and type


def insert_replicas(
    conn: Connection, name: str, intents: Sequence[ReplicaIntent], now: float
) -> list[ReplicaRecord]:
    """PENDING rows under fresh ids, in order; raises before writing anything when
    the service or a version is unknown, or a client token is already used."""
    service = conn.execute(q.SERVICE, {"name": name}).first()
    if service is None:
        raise ServiceNotFound(f"service {name!r} does not exist")
    if not intents:
        return []
    versions = sorted({i.version for i in intents})
    known = set(
        conn.execute(
            select(t.service_versions.c.version).where(
                t.service_versions.c.service == name, t.service_versions.c.version.in_(versions)
            )
        ).scalars()
    )
    for version in versions:
        if version not in known:
            raise ServiceNotFound(f"service {name!r} has no version {version}")
    tokens = [i.client_token for i in intents]
    seen: set[str] = set()
    for token in tokens:
        if token in seen:
            raise ValueError(f"client_token {token!r} is given twice")
        seen.add(token)
    for start in range(0, len(tokens), CHUNK):
        clash = conn.execute(
            select(t.replicas.c.service, t.replicas.c.replica_id, t.replicas.c.client_token).where(
                t.replicas.c.client_token.in_(tokens[start : start + CHUNK])
            )
        ).first()
        if clash is not None:
            raise ValueError(
                f"client_token {clash.client_token!r} is already used by replica "
                f"{clash.replica_id} of service {clash.service!r}"
            )
    first = int(service.next_replica_id)
    conn.execute(
        update(t.services)
        .where(t.services.c.name == name)
        .values(next_replica_id=first + len(intents))
    )
    conn.execute(
        insert(t.replicas),
        [
            {
                "service": name,
                "replica_id": first + n,
                "version": i.version,
                "status": ReplicaStatus.PENDING.value,
                "end_reason": None,
                "cloud": i.location.cloud,
                "region": i.location.region,
                "zone": i.location.zone,
                "spot": i.spot,
                "price": i.price,
                "instance_type": i.instance_type,
                "client_token": i.client_token,
                "created_at": now,
                "updated_at": now,
                "status_since": now,
                "probe_failures": 0,
                "launch_attempts": 0,
                "ondemand_price": i.ondemand_price,
            }
            for n, i in enumerate(intents)
        ],
    )
    rows = conn.execute(
        select(t.replicas)
        .where(
            t.replicas.c.service == name,
            t.replicas.c.replica_id >= first,
            t.replicas.c.replica_id < first + len(intents),
        )
        .order_by(t.replicas.c.replica_id)
    ).all()
    return [ReplicaRecord.from_row(r._mapping) for r in rows]
