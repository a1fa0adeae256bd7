"""The state store: services, their versions, replicas, placement and history.

:class:`Store` is the only way the rest of skyctl touches the database. It is
synchronous and quick (one SQLite file in WAL mode, one connection), meant to
be called from the controller's event loop between awaits, and from the CLI.
It never reads the clock: every time is passed in as ``now`` (epoch seconds).

Every method is atomic on its own. :meth:`Store.transaction` groups several
calls into one commit (one unit of work per controller tick); a call made
inside it runs in a SAVEPOINT, so a call that raises leaves nothing behind even
when the caller catches the error and goes on.

Writers raise :class:`~skyctl.errors.ServiceNotFound` for an unknown service;
readers of a service's collections (replicas, location states, policy state,
events) return an empty result instead. Database failures surface as a
one-line :class:`~skyctl.errors.StoreError` naming the file.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import Connection, Row, and_, delete, exists, func, insert, select, update

from skyctl.errors import InvalidTransition, ServiceExists, ServiceNotFound, StoreError
from skyctl.lifecycle import ENDING, UP, EndReason, ReplicaStatus, transition
from skyctl.store import ledger, migrations
from skyctl.store import schema as t
from skyctl.store import statements as q
from skyctl.store.costview import CostQueries
from skyctl.store.db import WRITE_INTENT, make_engine, prepare_file, translated
from skyctl.store.intents import ReplicaIntent, insert_replicas
from skyctl.store.jsonvalue import check_json
from skyctl.store.records import (
    EventRecord,
    ReplicaRecord,
    ServiceRecord,
    ServiceStatus,
    VersionRecord,
)
from skyctl.types import Location

EVENTS_KEPT = 10_000  # events kept per service (status shows the latest; older ones go)
EVENTS_TRIM_EVERY = 256  # inserts between trims

#: Replica columns :meth:`Store.update_replica` accepts as keyword arguments.
REPLICA_FIELDS: frozenset[str] = frozenset(
    "instance_id endpoint probe_failures interruption_at launch_attempts price ondemand_price "
    "exit_code failure log_tail".split()
)


class Store(CostQueries):
    """The state database at ``path`` (created and migrated on open)."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self._conn: Connection | None = None
        #: write blocks begun through this Store, ever: a caller that read something
        #: knows it is unchanged (by this process) while the count is
        self.writes = 0
        self._ledger = ledger.Ledger()  # the cost ledger's sums, cached while it is unchanged
        prepare_file(self.path)
        self._engine = make_engine(self.path, busy_timeout)
        try:
            with translated(self.path, "cannot open"):
                self._conn = self._engine.connect()
            self._migrate()
        except BaseException:
            self.close()
            raise

    def _migrate(self) -> None:
        known = migrations.MIGRATIONS  # looked up here so tests can add migrations
        latest = len(known)
        with self._read() as conn:
            version = migrations.current_version(conn, str(self.path))
        migrations.check_not_newer(version, str(self.path), latest)
        if version < latest:
            with self._write() as conn:  # re-checks: another process may have migrated
                migrations.upgrade(conn, str(self.path), known)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- transactions -------------------------------------------------------

    def _connection(self) -> Connection:
        if self._conn is None:
            raise StoreError(f"state database {self.path} is closed")
        return self._conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group calls into one commit; rolled back whole if the block raises.

        Nested calls join the outer transaction (each in its own SAVEPOINT).
        """
        with self._write():
            yield

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        conn = self._connection()
        self.writes += 1
        with translated(self.path, "write failed"):
            if conn.in_transaction():
                with conn.begin_nested():
                    yield conn
                return
            conn.info[WRITE_INTENT] = True
            try:
                with conn.begin():
                    yield conn
            finally:
                conn.info[WRITE_INTENT] = False

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        conn = self._connection()
        with translated(self.path, "read failed"):
            if conn.in_transaction():
                yield conn
                return
            with conn.begin():
                yield conn

    # -- services and versions ----------------------------------------------

    @staticmethod
    def _service_row(conn: Connection, name: str) -> Row[Any]:
        row = conn.execute(q.SERVICE, {"name": name}).first()
        if row is None:
            raise ServiceNotFound(f"service {name!r} does not exist")
        return row

    def create_service(
        self,
        name: str,
        yaml_text: str,
        *,
        now: float,
        router_host: str = "127.0.0.1",
        router_port: int | None = None,
        source: str | None = None,
        secrets_ciphertext: str | None = None,
    ) -> ServiceRecord:
        """Store a new service at version 1, status CONTROLLER_INIT.

        ``source`` names the file the spec came from, kept for error messages;
        ``secrets_ciphertext`` its encrypted secrets (``yaml_text`` is redacted).
        """
        with self._write() as conn:
            if conn.execute(select(t.services.c.name).where(t.services.c.name == name)).first():
                raise ServiceExists(f"service {name!r} already exists")
            conn.execute(
                insert(t.services).values(
                    name=name,
                    status=ServiceStatus.CONTROLLER_INIT.value,
                    current_version=1,
                    router_host=router_host,
                    router_port=router_port,
                    next_replica_id=1,
                    created_at=now,
                    updated_at=now,
                )
            )
            conn.execute(
                insert(t.service_versions).values(
                    service=name,
                    version=1,
                    yaml_text=yaml_text,
                    created_at=now,
                    source=source,
                    secrets_ciphertext=secrets_ciphertext,
                )
            )
            return ServiceRecord.from_row(self._service_row(conn, name)._mapping)

    def add_version(
        self,
        name: str,
        yaml_text: str,
        *,
        now: float,
        source: str | None = None,
        secrets_ciphertext: str | None = None,
        update_mode: str = "rolling",
        keep_replicas: Collection[int] = (),
    ) -> int:
        """Store a new spec for ``name``; it becomes the current version.

        ``update_mode`` says how it replaces older versions (``rolling`` or
        ``blue_green``). The live replicas in ``keep_replicas`` move to the new
        version as they are (an in-place update: no relaunch).
        """
        with self._write() as conn:
            self._service_row(conn, name)
            last = conn.execute(
                select(func.max(t.service_versions.c.version)).where(
                    t.service_versions.c.service == name
                )
            ).scalar_one()
            version = int(last or 0) + 1
            conn.execute(
                insert(t.service_versions).values(
                    service=name,
                    version=version,
                    yaml_text=yaml_text,
                    created_at=now,
                    source=source,
                    secrets_ciphertext=secrets_ciphertext,
                    update_mode=update_mode,
                )
            )
            conn.execute(
                update(t.services)
                .where(t.services.c.name == name)
                .values(current_version=version, updated_at=now)
            )
            if keep_replicas:
                conn.execute(
                    update(t.replicas)
                    .where(
                        t.replicas.c.service == name,
                        t.replicas.c.replica_id.in_(list(keep_replicas)),
                        t.replicas.c.status.in_([s.value for s in UP]),
                    )
                    .values(version=version, updated_at=now)
                )
            return version

    def get_service(self, name: str) -> ServiceRecord | None:
        with self._read() as conn:
            row = conn.execute(q.SERVICE, {"name": name}).first()
        return ServiceRecord.from_row(row._mapping) if row is not None else None

    def list_services(self) -> list[ServiceRecord]:
        with self._read() as conn:
            rows = conn.execute(select(t.services).order_by(t.services.c.name)).all()
        return [ServiceRecord.from_row(r._mapping) for r in rows]

    def update_service(
        self,
        name: str,
        *,
        now: float,
        status: ServiceStatus | None = None,
        router_port: int | None = None,
        router_host: str | None = None,
    ) -> ServiceRecord:
        """Change the given fields (``None`` leaves a field as it is)."""
        values: dict[str, Any] = {"updated_at": now}
        if status is not None:
            values["status"] = ServiceStatus(status).value
        if router_port is not None:
            values["router_port"] = router_port
        if router_host is not None:
            values["router_host"] = router_host
        with self._write() as conn:
            self._service_row(conn, name)
            conn.execute(update(t.services).where(t.services.c.name == name).values(**values))
            return ServiceRecord.from_row(self._service_row(conn, name)._mapping)

    def get_version(self, name: str, version: int) -> VersionRecord:
        with self._read() as conn:
            row = conn.execute(q.VERSION, {"service": name, "version": version}).first()
            if row is None:
                self._service_row(conn, name)
                raise ServiceNotFound(f"service {name!r} has no version {version}")
        return VersionRecord.from_row(row._mapping)

    def list_versions(self, name: str) -> list[VersionRecord]:
        with self._read() as conn:
            self._service_row(conn, name)
            rows = conn.execute(
                select(t.service_versions)
                .where(t.service_versions.c.service == name)
                .order_by(t.service_versions.c.version)
            ).all()
        return [VersionRecord.from_row(r._mapping) for r in rows]

    def delete_service(self, name: str) -> None:
        """Remove the service and every row about it (versions, replicas, states, events).

        Its ended replicas' cost facts stay in the ledger (see :mod:`skyctl.store.ledger`).
        """
        with self._write() as conn:
            self._service_row(conn, name)
            ledger.keep_in_ledger(conn, t.replicas.c.service == name)
            for table in (t.events, t.location_states, t.policy_state, t.replicas):
                conn.execute(delete(table).where(table.c.service == name))
            conn.execute(delete(t.service_versions).where(t.service_versions.c.service == name))
            conn.execute(delete(t.services).where(t.services.c.name == name))

    # -- replicas -----------------------------------------------------------

    def add_replica(
        self,
        name: str,
        *,
        version: int,
        location: Location,
        spot: bool,
        price: float,
        instance_type: str,
        client_token: str,
        now: float,
        ondemand_price: float | None = None,
    ) -> ReplicaRecord:
        """Record the intent to launch a replica (status PENDING) under a fresh id.

        Ids grow per service and are never reused, even after a purge.
        ``ondemand_price`` is the on-demand USD/h of the same place and type
        (for savings), when known.
        """
        intent = ReplicaIntent(
            version, location, spot, price, instance_type, client_token, ondemand_price
        )
        return self.add_replicas(name, [intent], now=now)[0]

    def add_replicas(
        self, name: str, intents: Sequence[ReplicaIntent], *, now: float
    ) -> list[ReplicaRecord]:
        """:meth:`add_replica` for a burst of launches, in a few statements (in order)."""
        with self._write() as conn:
            return insert_replicas(conn, name, intents, now)

    @staticmethod
    def _replica(conn: Connection, name: str, replica_id: int) -> ReplicaRecord:
        row = conn.execute(q.REPLICA, {"service": name, "replica_id": replica_id}).first()
        if row is None:
            raise ServiceNotFound(f"service {name!r} has no replica {replica_id}")
        return ReplicaRecord.from_row(row._mapping)

    def update_replica(
        self,
        name: str,
        replica_id: int,
        *,
        now: float,
        status: ReplicaStatus | None = None,
        reason: EndReason | None = None,
        **fields: Any,
    ) -> ReplicaRecord:
        """Move a replica to ``status`` (checked by the life cycle) and/or set ``fields``.

        ``reason`` is recorded with a move to SHUTTING_DOWN or TERMINATED (and
        required by the life cycle for it). A refused move writes nothing.
        """
        unknown = sorted(set(fields) - REPLICA_FIELDS)
        if unknown:
            raise TypeError(
                f"update_replica() got unknown field(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(REPLICA_FIELDS))}"
            )
        values: dict[str, Any] = {**fields, "updated_at": now}
        with self._write() as conn:
            current = self._replica(conn, name, replica_id)
            if status is not None:
                status = ReplicaStatus(status)
                transition(current.status, status, reason)
                if reason is not None and status not in ENDING:
                    raise InvalidTransition(
                        f"an end reason is recorded only with a move to SHUTTING_DOWN or "
                        f"TERMINATED, not {status}"
                    )
                values["status"] = status.value
                values["status_since"] = now
                if status is ReplicaStatus.READY and current.ready_at is None:
                    values["ready_at"] = now
                if status is ReplicaStatus.TERMINATED:
                    values["terminated_at"] = now
            elif reason is not None:
                raise InvalidTransition("an end reason needs a status change to go with it")
            if fields.get("instance_id") and current.billed_from is None:
                values["billed_from"] = now  # its instance exists: the cloud bills from here
            if reason is not None:
                values["end_reason"] = EndReason(reason).value
            params = {f"v_{column}": value for column, value in values.items()}
            conn.execute(
                q.update_replica(tuple(sorted(values))),
                {"_service": name, "_replica_id": replica_id, **params},
            )
            return self._replica(conn, name, replica_id)

    def get_replica(self, name: str, replica_id: int) -> ReplicaRecord | None:
        with self._read() as conn:
            row = conn.execute(q.REPLICA, {"service": name, "replica_id": replica_id}).first()
        return ReplicaRecord.from_row(row._mapping) if row is not None else None

    def list_replicas(self, name: str, *, include_terminated: bool = False) -> list[ReplicaRecord]:
        """The service's replicas ordered by id (live ones only unless asked)."""
        with self._read() as conn:
            if include_terminated:
                rows = conn.execute(q.REPLICAS, {"service": name}).all()
            else:
                terminated = ReplicaStatus.TERMINATED.value
                rows = conn.execute(
                    q.LIVE_REPLICAS, {"service": name, "terminated": terminated}
                ).all()
        return [ReplicaRecord.from_row(r._mapping) for r in rows]

    def purge_terminated(self, name: str, *, before: float) -> int:
        """Delete TERMINATED replicas that ended before ``before``; return how many.

        Their cost facts are kept in the ledger first (see :mod:`skyctl.store.ledger`).
        Nothing to purge writes nothing (a read, no write transaction).
        """
        old = and_(
            t.replicas.c.service == name,
            t.replicas.c.status == ReplicaStatus.TERMINATED.value,
            t.replicas.c.terminated_at < before,
        )
        with self._read() as conn:
            if conn.execute(select(t.replicas.c.replica_id).where(old).limit(1)).first() is None:
                return 0
        with self._write() as conn:
            ledger.keep_in_ledger(conn, old)
            result = conn.execute(
                delete(t.replicas).where(
                    t.replicas.c.service == name,
                    t.replicas.c.status == ReplicaStatus.TERMINATED.value,
                    t.replicas.c.terminated_at < before,
                )
            )
            return int(result.rowcount)

    def ledger_foldable(self, *, before: float) -> bool:
        """Whether the cost ledger has rows of replicas that ended before ``before``."""
        with self._read() as conn:
            return ledger.foldable(conn, before)

    def fold_ledger(self, *, before: float, limit: int) -> int:
        """Fold at most ``limit`` cost ledger rows of replicas that ended before
        ``before`` into per-day totals (:mod:`skyctl.store.ledger`); return how many.
        Thread-safe: it runs on a connection of its own, so the controller calls it in
        a worker thread. Summed in a read transaction; the write lock is held only to
        add the days and delete the rows (a few milliseconds a batch)."""
        with translated(self.path, "folding the cost ledger failed"):
            with self._engine.connect() as conn:
                with conn.begin():
                    plan = ledger.plan_fold(conn, before, limit)
                if plan is None:
                    return 0
                conn.info[WRITE_INTENT] = True
                with conn.begin():
                    ledger.apply_fold(conn, plan)
                return len(plan.rowids)

    def purge_versions(self, name: str, *, below: int) -> int:
        """Delete the versions numbered under ``below`` that no replica row has; return
        how many. Nothing to purge writes nothing (a read, no write transaction)."""
        v, r = t.service_versions, t.replicas
        old = and_(
            v.c.service == name,
            v.c.version < below,
            ~exists().where(r.c.service == name, r.c.version == v.c.version),
        )
        with self._read() as conn:
            if conn.execute(select(v.c.version).where(old).limit(1)).first() is None:
                return 0
        with self._write() as conn:
            return int(conn.execute(delete(v).where(old)).rowcount)

    # -- placement and policy state -----------------------------------------

    def location_states(self, name: str) -> dict[Location, str]:
        with self._read() as conn:
            rows = conn.execute(
                select(t.location_states.c.location, t.location_states.c.state)
                .where(t.location_states.c.service == name)
                .order_by(t.location_states.c.location)
            ).all()
        return {Location.parse(r.location): r.state for r in rows}

    def set_location_states(self, name: str, states: Mapping[Location, str], *, now: float) -> None:
        """Replace the whole set of location states of ``name``."""
        for location, state in states.items():
            if not isinstance(location, Location) or not isinstance(state, str):
                raise TypeError(f"location states map Location to str, got {location!r}: {state!r}")
        with self._write() as conn:
            self._service_row(conn, name)
            conn.execute(delete(t.location_states).where(t.location_states.c.service == name))
            if states:
                conn.execute(
                    insert(t.location_states),
                    [
                        {
                            "service": name,
                            "location": str(loc),
                            "state": str.__str__(st),  # a str enum's value, not its name
                            "updated_at": now,
                        }
                        for loc, st in states.items()
                    ],
                )

    def policy_state(self, name: str) -> dict[str, Any]:
        with self._read() as conn:
            text = conn.execute(
                select(t.policy_state.c.json).where(t.policy_state.c.service == name)
            ).scalar()
        return dict(json.loads(text)) if text is not None else {}

    def set_policy_state(self, name: str, state: Mapping[str, Any]) -> None:
        """Store the policies' state as JSON (str keys; None, bool, numbers, str, lists, maps)."""
        check_json(state, "policy state")
        text = json.dumps(state, sort_keys=True, allow_nan=False)
        with self._write() as conn:
            self._service_row(conn, name)
            conn.execute(delete(t.policy_state).where(t.policy_state.c.service == name))
            conn.execute(insert(t.policy_state).values(service=name, json=text))

    # -- events -------------------------------------------------------------

    def add_event(
        self, name: str, kind: str, message: str, *, now: float, replica_id: int | None = None
    ) -> None:
        """Record an event; a service keeps its latest ``EVENTS_KEPT`` (trimmed every
        ``EVENTS_TRIM_EVERY`` inserts, so the table stays bounded over months)."""
        self.add_events(name, [(kind, message, replica_id)], now=now)

    def add_events(
        self, name: str, events: Sequence[tuple[str, str, int | None]], *, now: float
    ) -> None:
        """Record several events (kind, message, replica id) with one insert."""
        with self._write() as conn:
            self._service_row(conn, name)
            if not events:
                return
            rows = [
                {"service": name, "replica_id": rid, "at": now, "kind": kind, "message": msg}
                for kind, msg, rid in events
            ]
            if len(rows) == 1:
                result = conn.execute(q.INSERT_EVENT, rows[0])
                last = result.inserted_primary_key[0] if result.inserted_primary_key else 0
            else:
                conn.execute(q.INSERT_EVENT, rows)
                last = conn.execute(select(func.max(t.events.c.id))).scalar() or 0
            ids = range(last - len(rows) + 1, last + 1)  # one writer: consecutive ids
            if any(i % EVENTS_TRIM_EVERY == 0 for i in ids):
                cutoff = conn.execute(
                    select(t.events.c.id)
                    .where(t.events.c.service == name)
                    .order_by(t.events.c.id.desc())
                    .offset(EVENTS_KEPT)
                    .limit(1)
                ).scalar()
                if cutoff is not None:
                    conn.execute(
                        delete(t.events).where(t.events.c.service == name, t.events.c.id <= cutoff)
                    )

    def events(self, name: str, *, limit: int = 100) -> list[EventRecord]:
        """The service's latest ``limit`` events, oldest first (newest last)."""
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        with self._read() as conn:
            rows = conn.execute(
                select(t.events)
                .where(t.events.c.service == name)
                .order_by(t.events.c.id.desc())
                .limit(limit)
            ).all()
        return [EventRecord.from_row(r._mapping) for r in reversed(rows)]
