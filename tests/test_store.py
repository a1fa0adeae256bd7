"""The state store (skyctl.store), as a specification.

Each test opens its own database under ``tmp_path``; a second connection
through the stdlib ``sqlite3`` module checks what really reached the file.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from skyctl.errors import (
    InvalidTransition,
    SchemaVersionError,
    ServiceExists,
    ServiceNotFound,
    StoreError,
)
from skyctl.lifecycle import EndReason, ReplicaStatus
from skyctl.store import (
    SCHEMA_VERSION,
    EventRecord,
    ReplicaIntent,
    ReplicaRecord,
    ServiceRecord,
    ServiceStatus,
    Store,
    VersionRecord,
    schema,
)
from skyctl.store import migrations as mig
from skyctl.types import Location

R = ReplicaStatus
ZONE_A = Location("aws", "us-east-1", "us-east-1a")
K8S = Location("kubernetes", "ctx", "")
REPO_ROOT = Path(__file__).resolve().parent.parent
TABLES = ["services", "service_versions", "replicas", "location_states", "policy_state", "events"]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "state.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    s = Store(db_path)
    yield s
    s.close()


@pytest.fixture
def svc(store: Store) -> str:
    store.create_service("svc", "name: svc\n", now=100.0)
    return "svc"


def add(store: Store, name: str = "svc", token: str = "", **kw: Any) -> ReplicaRecord:
    args: dict[str, Any] = dict(
        version=1, location=ZONE_A, spot=True, price=0.5, instance_type="g5.xlarge", now=200.0
    )
    args.update(kw)
    return store.add_replica(name, client_token=token or f"tok-{os.urandom(6).hex()}", **args)


def walk(store: Store, rid: int, *statuses: ReplicaStatus, now: float = 300.0) -> None:
    for i, status in enumerate(statuses):
        reason = EndReason.SCALED_DOWN if status in (R.SHUTTING_DOWN, R.TERMINATED) else None
        store.update_replica("svc", rid, now=now + i, status=status, reason=reason)


def raw(path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# -- services and versions ---------------------------------------------------


def test_a_new_service_is_at_version_1_waiting_for_the_controller(store: Store) -> None:
    rec = store.create_service("svc", "yaml-1", now=10.0, router_port=8080, source="svc.yaml")
    assert rec == ServiceRecord("svc", ServiceStatus.CONTROLLER_INIT, 1, "127.0.0.1", 8080, 10, 10)
    assert store.get_service("svc") == rec
    assert store.list_versions("svc") == [VersionRecord("svc", 1, "yaml-1", 10.0, "svc.yaml")]


def test_creating_a_service_twice_raises_and_keeps_the_first(store: Store, svc: str) -> None:
    with pytest.raises(ServiceExists, match="'svc' already exists"):
        store.create_service(svc, "other", now=1.0)
    assert store.get_version(svc, 1).yaml_text == "name: svc\n"
    assert len(store.list_versions(svc)) == 1


def test_unknown_service_reads_as_none_and_services_list_by_name(store: Store) -> None:
    assert store.get_service("nope") is None
    for name in ["b", "c", "a"]:
        store.create_service(name, "y", now=1.0)
    assert [s.name for s in store.list_services()] == ["a", "b", "c"]


def test_update_service_changes_only_the_given_fields(store: Store, svc: str) -> None:
    rec = store.update_service(svc, now=150.0, status=ServiceStatus.READY, router_port=9000)
    assert (rec.status, rec.router_port, rec.router_host) == (
        ServiceStatus.READY,
        9000,
        "127.0.0.1",
    )
    assert (rec.created_at, rec.updated_at) == (100.0, 150.0)
    rec = store.update_service(svc, now=160.0, router_host="0.0.0.0")
    assert (rec.status, rec.router_port, rec.router_host) == (ServiceStatus.READY, 9000, "0.0.0.0")
    assert store.get_service(svc) == rec


def test_update_service_refuses_an_unknown_status(store: Store, svc: str) -> None:
    with pytest.raises(ValueError, match="BOGUS"):
        store.update_service(svc, now=1.0, status="BOGUS")  # type: ignore[arg-type]
    assert store.get_service(svc).status is ServiceStatus.CONTROLLER_INIT  # type: ignore[union-attr]


def test_add_version_makes_it_current_and_keeps_the_old_ones(store: Store, svc: str) -> None:
    assert store.add_version(svc, "yaml-2", now=110.0) == 2
    assert store.add_version(svc, "yaml-3", now=120.0) == 3
    assert store.get_service(svc).current_version == 3  # type: ignore[union-attr]
    assert [v.version for v in store.list_versions(svc)] == [1, 2, 3]
    assert store.get_version(svc, 2) == VersionRecord(svc, 2, "yaml-2", 110.0)


def test_an_unknown_version_is_reported_as_such(store: Store, svc: str) -> None:
    with pytest.raises(ServiceNotFound, match="'svc' has no version 7"):
        store.get_version(svc, 7)
    with pytest.raises(ServiceNotFound, match="'svc' has no version 7"):
        add(store, version=7)


def test_delete_service_removes_every_row_about_it_and_only_those(
    store: Store, svc: str, db_path: Path
) -> None:
    for name in (svc, "other"):
        if name == "other":
            store.create_service(name, "y", now=1.0)
        store.add_version(name, "v2", now=2.0)
        rid = add(store, name).replica_id
        store.update_replica(name, rid, now=3.0, status=R.TERMINATED, reason=EndReason.USER)
        add(store, name)
        store.set_location_states(name, {ZONE_A: "ACTIVE"}, now=4.0)
        store.set_policy_state(name, {"k": 1})
        store.add_event(name, "launch", "m", now=5.0, replica_id=rid)
    store.delete_service(svc)
    assert store.get_service(svc) is None
    for table in TABLES:
        column = "name" if table == "services" else "service"
        assert raw(db_path, f"SELECT count(*) FROM {table} WHERE {column} = ?", svc) == [(0,)]
        assert raw(db_path, f"SELECT count(*) FROM {table} WHERE {column} = ?", "other") != [(0,)]


WRITERS: list[tuple[str, Callable[[Store], object]]] = [
    ("add_version", lambda s: s.add_version("nope", "y", now=1.0)),
    ("update_service", lambda s: s.update_service("nope", now=1.0, status=ServiceStatus.READY)),
    ("delete_service", lambda s: s.delete_service("nope")),
    ("add_replica", lambda s: add(s, "nope")),
    ("update_replica", lambda s: s.update_replica("nope", 1, now=1.0, probe_failures=1)),
    ("set_location_states", lambda s: s.set_location_states("nope", {ZONE_A: "A"}, now=1.0)),
    ("set_policy_state", lambda s: s.set_policy_state("nope", {})),
    ("add_event", lambda s: s.add_event("nope", "k", "m", now=1.0)),
    ("get_version", lambda s: s.get_version("nope", 1)),
    ("list_versions", lambda s: s.list_versions("nope")),
]


@pytest.mark.parametrize("call", [c for _, c in WRITERS], ids=[n for n, _ in WRITERS])
def test_calls_that_need_a_service_raise_service_not_found(
    store: Store, call: Callable[[Store], object]
) -> None:
    with pytest.raises(ServiceNotFound, match="'nope'"):
        call(store)


READERS: list[tuple[str, Callable[[Store], object], object]] = [
    ("get_replica", lambda s: s.get_replica("nope", 1), None),
    ("list_replicas", lambda s: s.list_replicas("nope", include_terminated=True), []),
    ("location_states", lambda s: s.location_states("nope"), {}),
    ("policy_state", lambda s: s.policy_state("nope"), {}),
    ("events", lambda s: s.events("nope"), []),
    ("purge_terminated", lambda s: s.purge_terminated("nope", before=1e12), 0),
]


@pytest.mark.parametrize(
    ("call", "empty"), [(c, e) for _, c, e in READERS], ids=[n for n, _, _ in READERS]
)
def test_readers_of_an_unknown_service_return_empty(
    store: Store, call: Callable[[Store], object], empty: object
) -> None:
    assert call(store) == empty


# -- replicas ------------------------------------------------------------------


def test_a_new_replica_is_pending_with_what_was_decided(store: Store, svc: str) -> None:
    rec = add(store, location=K8S, spot=False, price=1.25, token="t-1")
    assert (rec.replica_id, rec.version, rec.status, rec.end_reason) == (1, 1, R.PENDING, None)
    assert (rec.location, rec.spot, rec.price, rec.client_token) == (K8S, False, 1.25, "t-1")
    assert (rec.created_at, rec.updated_at, rec.status_since) == (200.0, 200.0, 200.0)
    assert (rec.probe_failures, rec.launch_attempts, rec.instance_id) == (0, 0, None)
    assert rec.is_live
    assert store.get_replica(svc, 1) == rec


def test_replica_ids_grow_and_are_never_reused(store: Store, svc: str, db_path: Path) -> None:
    ids = [add(store).replica_id for _ in range(3)]
    assert ids == [1, 2, 3]
    for rid in ids:
        store.update_replica(svc, rid, now=300.0, status=R.TERMINATED, reason=EndReason.FAILED)
    assert store.purge_terminated(svc, before=400.0) == 3
    assert store.list_replicas(svc, include_terminated=True) == []
    assert add(store).replica_id == 4
    store.close()
    with Store(db_path) as reopened:
        assert add(reopened).replica_id == 5


def test_a_client_token_names_one_replica_only(store: Store, svc: str) -> None:
    add(store, token="same")
    with pytest.raises(ValueError, match="client_token 'same' is already used by replica 1"):
        add(store, token="same")
    assert [r.replica_id for r in store.list_replicas(svc)] == [1]
    assert add(store).replica_id == 2  # the refused call took no id


def test_replica_timestamps_follow_its_life(store: Store, svc: str) -> None:
    rid = add(store).replica_id
    store.update_replica(svc, rid, now=301.0, status=R.PROVISIONING, launch_attempts=1)
    rec = store.update_replica(svc, rid, now=302.0, status=R.STARTING, instance_id="i-1")
    assert (rec.status, rec.status_since, rec.instance_id, rec.launch_attempts) == (
        R.STARTING,
        302.0,
        "i-1",
        1,
    )
    rec = store.update_replica(svc, rid, now=303.0, status=R.READY, endpoint="http://h:1")
    assert (rec.ready_at, rec.status_since) == (303.0, 303.0)
    store.update_replica(svc, rid, now=304.0, status=R.NOT_READY, probe_failures=3)
    rec = store.update_replica(svc, rid, now=305.0, status=R.READY, probe_failures=0)
    assert (rec.ready_at, rec.status_since) == (303.0, 305.0)  # ready_at is the first time
    rec = store.update_replica(svc, rid, now=306.0, interruption_at=426.0)
    assert (rec.status_since, rec.updated_at, rec.interruption_at) == (305.0, 306.0, 426.0)
    rec = store.update_replica(
        svc, rid, now=307.0, status=R.SHUTTING_DOWN, reason=EndReason.PREEMPTED
    )
    assert (rec.end_reason, rec.terminated_at, rec.is_live) == (EndReason.PREEMPTED, None, True)
    rec = store.update_replica(svc, rid, now=308.0, status=R.TERMINATED)
    assert (rec.status, rec.end_reason, rec.terminated_at) == (
        R.TERMINATED,
        EndReason.PREEMPTED,
        308.0,
    )
    assert not rec.is_live
    assert store.get_replica(svc, rid) == rec


REFUSED: list[tuple[str, list[ReplicaStatus], dict[str, Any], type[Exception]]] = [
    ("skip provisioning", [], {"status": R.READY}, InvalidTransition),
    ("back to pending", [R.PROVISIONING], {"status": R.PENDING}, InvalidTransition),
    ("same status", [R.PROVISIONING], {"status": R.PROVISIONING}, InvalidTransition),
    ("terminate without reason", [], {"status": R.TERMINATED}, InvalidTransition),
    ("shut down without reason", [], {"status": R.SHUTTING_DOWN}, InvalidTransition),
    ("out of terminated", [R.TERMINATED], {"status": R.PENDING}, InvalidTransition),
    (
        "terminated again",
        [R.TERMINATED],
        {"status": R.TERMINATED, "reason": EndReason.USER},
        InvalidTransition,
    ),
    (
        "reason on a live move",
        [],
        {"status": R.PROVISIONING, "reason": EndReason.USER},
        InvalidTransition,
    ),
    ("reason without status", [], {"reason": EndReason.USER}, InvalidTransition),
    ("unknown field", [], {"status": R.PROVISIONING, "region": "x"}, TypeError),
]


@pytest.mark.parametrize(
    ("before", "change", "error"),
    [(b, c, e) for _, b, c, e in REFUSED],
    ids=[n for n, *_ in REFUSED],
)
def test_a_refused_replica_update_writes_nothing(
    store: Store,
    svc: str,
    before: list[ReplicaStatus],
    change: dict[str, Any],
    error: type[Exception],
) -> None:
    rid = add(store).replica_id
    walk(store, rid, *before)
    snapshot = store.get_replica(svc, rid)
    with pytest.raises(error):
        store.update_replica(svc, rid, now=999.0, instance_id="i-written?", **change)
    assert store.get_replica(svc, rid) == snapshot


def test_unknown_replica_fields_are_named_with_the_allowed_ones(store: Store, svc: str) -> None:
    rid = add(store).replica_id
    with pytest.raises(TypeError, match=r"unknown field\(s\) zone; allowed: endpoint, "):
        store.update_replica(svc, rid, now=1.0, zone="b")


def test_unknown_replica_is_reported(store: Store, svc: str) -> None:
    with pytest.raises(ServiceNotFound, match="'svc' has no replica 9"):
        store.update_replica(svc, 9, now=1.0, probe_failures=1)
    assert store.get_replica(svc, 9) is None


def test_list_replicas_orders_by_id_and_hides_terminated_unless_asked(
    store: Store, svc: str
) -> None:
    for _ in range(4):
        add(store)
    walk(store, 2, R.TERMINATED)
    assert [r.replica_id for r in store.list_replicas(svc)] == [1, 3, 4]
    all_ids = [r.replica_id for r in store.list_replicas(svc, include_terminated=True)]
    assert all_ids == [1, 2, 3, 4]


def test_purge_removes_only_replicas_terminated_before_the_cutoff(store: Store, svc: str) -> None:
    for _ in range(4):
        add(store)
    walk(store, 1, R.TERMINATED, now=100.0)
    walk(store, 2, R.TERMINATED, now=200.0)
    walk(store, 3, R.SHUTTING_DOWN, now=50.0)
    assert store.purge_terminated(svc, before=200.0) == 1
    assert [r.replica_id for r in store.list_replicas(svc, include_terminated=True)] == [2, 3, 4]


def test_records_are_frozen_values(store: Store, svc: str) -> None:
    rec = add(store)
    store.add_event(svc, "k", "m", now=1.0)
    records = [rec, store.get_service(svc), store.get_version(svc, 1), store.events(svc)[0]]
    for record, field in zip(records, ["status", "status", "yaml_text", "message"], strict=True):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(record, field, "X")
    assert isinstance(store.events(svc)[0], EventRecord)


# -- placement state, policy state, events -------------------------------------


def test_location_states_replace_the_whole_set(store: Store, svc: str) -> None:
    store.set_location_states(svc, {ZONE_A: "ACTIVE", K8S: "PREEMPTED"}, now=1.0)
    assert store.location_states(svc) == {ZONE_A: "ACTIVE", K8S: "PREEMPTED"}
    store.set_location_states(svc, {K8S: "ACTIVE"}, now=2.0)
    assert store.location_states(svc) == {K8S: "ACTIVE"}
    store.set_location_states(svc, {}, now=3.0)
    assert store.location_states(svc) == {}


def test_location_states_store_a_str_enum_by_its_value(store: Store, svc: str) -> None:
    class Hedge(str, enum.Enum):  # no __str__: str() would give "Hedge.ACTIVE"
        ACTIVE = "ACTIVE"

    store.set_location_states(svc, {ZONE_A: Hedge.ACTIVE}, now=1.0)
    assert store.location_states(svc) == {ZONE_A: "ACTIVE"}
    assert type(store.location_states(svc)[ZONE_A]) is str


def test_location_states_refuse_keys_that_are_not_locations(store: Store, svc: str) -> None:
    store.set_location_states(svc, {ZONE_A: "ACTIVE"}, now=1.0)
    with pytest.raises(TypeError, match="Location to str"):
        store.set_location_states(svc, {"aws/us-east-1": "ACTIVE"}, now=2.0)  # type: ignore[dict-item]
    assert store.location_states(svc) == {ZONE_A: "ACTIVE"}


def test_policy_state_round_trips_as_json(store: Store, svc: str) -> None:
    assert store.policy_state(svc) == {}
    state = {"hedge": {"aws/us-east-1/us-east-1a": "ACTIVE"}, "n": [1, 2.5, None, True, "x"]}
    store.set_policy_state(svc, state)
    assert store.policy_state(svc) == state
    store.set_policy_state(svc, {"n": 2})
    assert store.policy_state(svc) == {"n": 2}


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"s": {1, 2}}, r"policy state\.s: set"),
        ({"o": object()}, "object is not JSON"),
        ({1: "int key"}, "key 1 is not a string"),
        ({"loc": {ZONE_A: 1}}, "key Location"),
        ({"x": float("nan")}, "nan is not valid JSON"),
        ({"l": [1, b"bytes"]}, r"policy state\.l\[1\]: bytes"),
    ],
    ids=["set", "object", "int-key", "location-key", "nan", "bytes-in-list"],
)
def test_policy_state_refuses_what_json_cannot_keep(
    store: Store, svc: str, state: dict[Any, Any], message: str
) -> None:
    store.set_policy_state(svc, {"kept": True})
    with pytest.raises(TypeError, match=message):
        store.set_policy_state(svc, state)
    assert store.policy_state(svc) == {"kept": True}


def test_policy_state_refuses_a_cycle(store: Store, svc: str) -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(TypeError, match="nested deeper"):
        store.set_policy_state(svc, loop)


def test_events_come_newest_last_and_limited(store: Store, svc: str) -> None:
    for i in range(5):
        store.add_event(svc, "tick", f"m{i}", now=float(i), replica_id=i if i % 2 else None)
    latest = store.events(svc, limit=3)
    assert [(e.message, e.at, e.replica_id) for e in latest] == [
        ("m2", 2.0, None),
        ("m3", 3.0, 3),
        ("m4", 4.0, None),
    ]
    assert len(store.events(svc)) == 5
    assert store.events(svc, limit=0) == []
    with pytest.raises(ValueError, match="limit must be >= 0"):
        store.events(svc, limit=-1)


def test_a_service_keeps_its_latest_events_only(
    store: Store, svc: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skyctl.store import store as store_module

    monkeypatch.setattr(store_module, "EVENTS_KEPT", 5)
    monkeypatch.setattr(store_module, "EVENTS_TRIM_EVERY", 8)
    for i in range(40):
        store.add_event(svc, "tick", f"m{i}", now=float(i))
    kept = store.events(svc, limit=1000)
    assert 5 <= len(kept) < 5 + 8  # trimmed every 8 inserts down to the latest 5
    assert kept[-1].message == "m39"
    assert [e.message for e in kept] == [f"m{i}" for i in range(40 - len(kept), 40)]


# -- transactions ----------------------------------------------------------------


def test_a_transaction_commits_its_calls_together(store: Store, db_path: Path) -> None:
    with store.transaction():
        store.create_service("svc", "y", now=1.0)
        add(store)
        assert raw(db_path, "SELECT count(*) FROM replicas") == [(0,)]  # not visible yet
    assert raw(db_path, "SELECT count(*) FROM replicas") == [(1,)]


def test_an_exception_rolls_the_whole_transaction_back(store: Store, db_path: Path) -> None:
    store.create_service("kept", "y", now=1.0)
    with pytest.raises(RuntimeError, match="boom"), store.transaction():
        store.create_service("svc", "y", now=1.0)
        add(store)
        store.add_event("svc", "k", "m", now=1.0)
        store.update_service("kept", now=2.0, status=ServiceStatus.FAILED)
        raise RuntimeError("boom")
    assert [s.name for s in store.list_services()] == ["kept"]
    assert store.get_service("kept").status is ServiceStatus.CONTROLLER_INIT  # type: ignore[union-attr]
    for table in TABLES[1:]:
        assert raw(db_path, f"SELECT count(*) FROM {table} WHERE service = 'svc'") == [(0,)]


def test_a_failed_inner_block_is_undone_while_the_outer_one_commits(store: Store, svc: str) -> None:
    with store.transaction():
        store.add_event(svc, "outer", "kept", now=1.0)
        with pytest.raises(RuntimeError), store.transaction():
            store.add_event(svc, "inner", "dropped", now=2.0)
            raise RuntimeError("inner")
        with pytest.raises(InvalidTransition):
            store.update_replica(svc, add(store).replica_id, now=3.0, status=R.READY)
    assert [e.kind for e in store.events(svc)] == ["outer"]
    assert [r.status for r in store.list_replicas(svc)] == [R.PENDING]


def test_a_closed_store_says_so(db_path: Path) -> None:
    s = Store(db_path)
    s.close()
    s.close()  # closing twice is harmless
    with pytest.raises(StoreError, match="is closed"):
        s.list_services()


# -- two connections on one file ------------------------------------------------


def test_a_second_store_reads_committed_state_while_a_write_is_open(db_path: Path) -> None:
    with Store(db_path) as writer, Store(db_path) as reader:
        writer.create_service("svc", "y", now=1.0)
        with writer.transaction():
            add(writer)
            assert reader.get_service("svc") is not None
            assert reader.list_replicas("svc") == []
        assert [r.replica_id for r in reader.list_replicas("svc")] == [1]


def test_a_writer_blocked_past_busy_timeout_gets_a_store_error(db_path: Path) -> None:
    with Store(db_path) as first, Store(db_path, busy_timeout=0.05) as second:
        first.create_service("svc", "y", now=1.0)
        with first.transaction():
            first.add_event("svc", "k", "m", now=1.0)
            with pytest.raises(StoreError, match=r"state\.db: write failed: database is locked"):
                second.add_event("svc", "k", "other", now=2.0)
        second.add_event("svc", "k", "after", now=3.0)
        assert [e.message for e in first.events("svc")] == ["m", "after"]


# -- the file: permissions, migrations, bad files, crashes -----------------------


def test_the_database_and_its_directory_are_private(tmp_path: Path, db_path: Path) -> None:
    before = stat.S_IMODE(tmp_path.stat().st_mode)
    with Store(db_path) as s:
        s.create_service("svc", "secret", now=1.0)
        files = [p for p in db_path.parent.iterdir()]
        assert {p.name for p in files} >= {"state.db", "state.db-wal"}
        for p in files:
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p.name
    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(tmp_path.stat().st_mode) == before  # an existing parent is left alone


def test_an_empty_file_is_migrated_to_the_latest_schema(db_path: Path) -> None:
    db_path.parent.mkdir()
    db_path.touch()
    Store(db_path).close()
    assert raw(db_path, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
    assert raw(db_path, "PRAGMA journal_mode") == [("wal",)]


def test_the_migrated_schema_matches_the_tables_the_queries_use(
    store: Store, db_path: Path
) -> None:
    for table in schema.metadata.sorted_tables:
        columns = raw(db_path, f"PRAGMA table_info({table.name})")
        on_disk = {(c[1], bool(c[3]) or bool(c[5])) for c in columns}  # (name, notnull or pk)
        in_code = {(c.name, not c.nullable) for c in table.columns}
        assert on_disk == in_code, table.name


def test_a_version_keeps_its_update_mode_and_moves_the_kept_live_replicas(
    store: Store, svc: str
) -> None:
    """serve update: the mode is the version's; replicas kept in place move to it in the
    same transaction (ids unchanged), ended ones stay where they were."""
    assert store.get_version(svc, 1).update_mode == "rolling"
    kept, other, ended = (add(store).replica_id for _ in range(3))
    walk(store, ended, R.PROVISIONING, R.SHUTTING_DOWN)
    v2 = store.add_version(
        svc, "name: svc\n# 2\n", now=400.0, update_mode="blue_green", keep_replicas=[kept, ended]
    )
    assert store.get_version(svc, v2).update_mode == "blue_green"
    versions = {r.replica_id: r.version for r in store.list_replicas(svc)}
    assert versions == {kept: 2, other: 1, ended: 1}


def test_migrations_are_numbered_one_to_n() -> None:
    assert [m.version for m in mig.MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))
    with pytest.raises(ValueError, match=r"numbered 1\.\.n"):
        mig.check_ordered([mig.MIGRATIONS[0], mig.Migration(3, "gap", ())])


def test_a_version_1_database_is_upgraded_keeping_its_rows(db_path: Path) -> None:
    db_path.parent.mkdir()
    conn = sqlite3.connect(db_path)
    for statement in mig.MIGRATIONS[0].statements:
        conn.execute(statement)
    conn.executescript(
        """
        UPDATE schema_version SET version = 1;
        INSERT INTO services VALUES ('svc', 'READY', 1, '127.0.0.1', 8080, 2, 1.0, 1.0);
        INSERT INTO service_versions VALUES ('svc', 1, 'y', 1.0);
        INSERT INTO replicas VALUES ('svc', 1, 1, 'READY', NULL, 'aws', 'r', 'z', 1, 0.5, 't',
            'i-1', 'http://h:1', 't-1', 1.0, 1.0, 1.0, 1.0, NULL, 0, NULL, 1);
        """
    )
    conn.close()
    with Store(db_path) as s:
        assert s.get_version("svc", 1) == VersionRecord("svc", 1, "y", 1.0, source=None)
        assert [(r.client_token, r.status) for r in s.list_replicas("svc")] == [("t-1", R.READY)]
        assert s.add_version("svc", "y2", now=2.0, source="svc.yaml") == 2
        assert s.get_version("svc", 2).source == "svc.yaml"
        assert add(s).replica_id == 2
    assert raw(db_path, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]


def test_a_pending_migration_runs_once_and_a_newer_database_is_refused(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Store(db_path) as s:
        s.create_service("svc", "y", now=1.0)
    nxt = SCHEMA_VERSION + 1
    step = mig.Migration(nxt, "add a note", ("ALTER TABLE services ADD COLUMN note TEXT",))
    with monkeypatch.context() as m:
        m.setattr(mig, "MIGRATIONS", (*mig.MIGRATIONS, step))
        Store(db_path).close()
        Store(db_path).close()  # already there: nothing to run again
    assert raw(db_path, "SELECT version FROM schema_version") == [(nxt,)]
    assert raw(db_path, "SELECT name, note FROM services") == [("svc", None)]
    with pytest.raises(
        SchemaVersionError,
        match=rf"state\.db has schema version {nxt} but this skyctl knows up to {SCHEMA_VERSION}",
    ):
        Store(db_path)
    assert raw(db_path, "SELECT version FROM schema_version") == [(nxt,)]  # left unchanged


def test_a_failing_migration_leaves_the_database_at_its_old_version(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Store(db_path) as s:
        s.create_service("svc", "y", now=1.0)
    statements = ("ALTER TABLE services ADD COLUMN note TEXT", "THIS IS NOT SQL")
    bad = mig.Migration(SCHEMA_VERSION + 1, "half", statements)
    monkeypatch.setattr(mig, "MIGRATIONS", (*mig.MIGRATIONS, bad))
    with pytest.raises(StoreError, match=r"state\.db: write failed: .*syntax error"):
        Store(db_path)
    assert raw(db_path, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
    assert "note" not in {c[1] for c in raw(db_path, "PRAGMA table_info(services)")}


@pytest.mark.parametrize(
    "content",
    [b"this is not a database" * 100, b"SQLite format 3\x00" + b"\xff" * 4080],
    ids=["text", "damaged-header"],
)
def test_a_file_that_is_not_a_database_raises_store_error_naming_it(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(content)
    with pytest.raises(StoreError) as info:
        Store(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)
    assert path.read_bytes() == content  # never reset


def test_another_programs_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    raw(path, "CREATE TABLE notes (x TEXT)")
    with pytest.raises(StoreError, match="is a SQLite database but not a skyctl state database"):
        Store(path)


def test_a_directory_in_place_of_the_file_raises_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=f"{tmp_path}: cannot open"):
        Store(tmp_path)


WRITER_SCRIPT = textwrap.dedent(
    """
    import sys
    from skyctl.store import Store
    from skyctl.types import Location

    store = Store(sys.argv[1])
    store.create_service("svc", "y", now=0.0)
    i = 0
    while True:
        i += 1
        with store.transaction():
            rec = store.add_replica(
                "svc", version=1, location=Location("aws", "r", "z"), spot=True,
                price=1.0, instance_type="t", client_token=f"tok-{i}", now=float(i),
            )
            store.add_event("svc", "launch", "x" * 500, now=float(i), replica_id=rec.replica_id)
            store.set_policy_state("svc", {"n": i})
        print(i, flush=True)
    """
)


def test_a_writer_killed_mid_transaction_leaves_a_sound_database(db_path: Path) -> None:
    script = db_path.parent.parent / "writer.py"
    script.write_text(WRITER_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db_path)],
        stdout=subprocess.PIPE,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        assert proc.stdout is not None
        committed = 0
        while committed < 300:
            line = proc.stdout.readline()
            assert line, "the writer died on its own"
            committed = int(line)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert raw(db_path, "PRAGMA integrity_check") == [("ok",)]
    with Store(db_path) as s:
        replicas = s.list_replicas("svc")
        assert len(replicas) >= committed
        assert [r.replica_id for r in replicas] == list(range(1, len(replicas) + 1))
        assert len(s.events("svc", limit=10_000)) == len(replicas)  # whole transactions only
        assert s.policy_state("svc") == {"n": len(replicas)}
        assert add(s).replica_id == len(replicas) + 1


def test_the_public_api_is_pinned() -> None:
    import skyctl.store

    assert set(skyctl.store.__all__) == {
        "REPLICA_FIELDS",
        "SCHEMA_VERSION",
        "EventRecord",
        "ReplicaIntent",
        "ReplicaRecord",
        "ServiceRecord",
        "ServiceStatus",
        "Store",
        "VersionRecord",
    }
    assert [s.value for s in ServiceStatus] == [
        "CONTROLLER_INIT",
        "REPLICA_INIT",
        "READY",
        "NO_REPLICA",
        "SHUTTING_DOWN",
        "FAILED",
    ]


def test_a_burst_of_launch_intents_is_recorded_at_once_in_order_with_fresh_ids(
    store: Store,
) -> None:
    store.create_service("burst", "name: burst\n", now=1.0)
    one = store.add_replica(
        "burst", version=1, location=ZONE_A, spot=False, price=3.0, instance_type="t",
        client_token="solo", now=1.0,
    )  # fmt: skip
    intents = [
        ReplicaIntent(1, ZONE_A, True, 1.0 + i, "t", f"tok-{i}", ondemand_price=3.0)
        for i in range(3)
    ]
    records = store.add_replicas("burst", intents, now=2.0)
    assert [r.replica_id for r in records] == [one.replica_id + 1 + i for i in range(3)]
    assert [(r.price, r.client_token, r.status) for r in records] == [
        (1.0 + i, f"tok-{i}", ReplicaStatus.PENDING) for i in range(3)
    ]
    assert store.list_replicas("burst") == [one, *records]
    with pytest.raises(ValueError, match="'tok-1' is already used by replica"):
        store.add_replicas("burst", [ReplicaIntent(1, ZONE_A, True, 1.0, "t", "tok-1")], now=3.0)
    with pytest.raises(ServiceNotFound, match="no version 7"):
        store.add_replicas("burst", [ReplicaIntent(7, ZONE_A, True, 1.0, "t", "new")], now=3.0)
    assert len(store.list_replicas("burst")) == 4  # a refused burst writes nothing
    events = [("launch", f"#{r.replica_id}", r.replica_id) for r in records]
    store.add_events("burst", events, now=2.0)
    assert [(e.kind, e.replica_id) for e in store.events("burst")][-3:] == [
        ("launch", r.replica_id) for r in records
    ]
