"""The store's most frequent statements, built once.

Building a SQLAlchemy statement (``select(...).where(col == value)``) and
computing its cache key costs more than running it on SQLite: about 150 us of
the 220 us a replica lookup took. The controller runs these on every tick,
launch and probe transition, so they are built here once with bound
parameters (their cache keys are then memoized) and executed with a dict of
values. Statements that vary in shape (an UPDATE of some columns) are built
once per shape (:func:`update_replica`).
"""

from __future__ import annotations

from functools import cache

from sqlalchemy import Update, bindparam, insert, select, update

from skyctl.store import schema as t

#: a service's row: {"name"}
SERVICE = select(t.services).where(t.services.c.name == bindparam("name"))
#: one stored version: {"service", "version"}
VERSION = select(t.service_versions).where(
    t.service_versions.c.service == bindparam("service"),
    t.service_versions.c.version == bindparam("version"),
)
#: one replica: {"service", "replica_id"}
REPLICA = select(t.replicas).where(
    t.replicas.c.service == bindparam("service"),
    t.replicas.c.replica_id == bindparam("replica_id"),
)
#: a service's replicas by id: {"service"}; LIVE_REPLICAS also {"terminated"}
REPLICAS = (
    select(t.replicas)
    .where(t.replicas.c.service == bindparam("service"))
    .order_by(t.replicas.c.replica_id)
)
LIVE_REPLICAS = (
    select(t.replicas)
    .where(
        t.replicas.c.service == bindparam("service"),
        t.replicas.c.status != bindparam("terminated"),
    )
    .order_by(t.replicas.c.replica_id)
)
#: an event: {"service", "replica_id", "at", "kind", "message"}
INSERT_EVENT = insert(t.events)


@cache
def update_replica(columns: tuple[str, ...]) -> Update:
    """``UPDATE replicas SET <columns>`` of one replica: {"_service", "_replica_id",
    "v_<column>"...} (a bound name may not be a column's own)."""
    return (
        update(t.replicas)
        .where(
            t.replicas.c.service == bindparam("_service"),
            t.replicas.c.replica_id == bindparam("_replica_id"),
        )
        .values({column: bindparam(f"v_{column}") for column in columns})
    )
