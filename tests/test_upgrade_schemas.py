"""Upgrading skyctl: state databases written by earlier releases open in this one.

Each ``tests/data/upgrade/schema-N.sql`` is a real database of an older commit
(schema version N, captured with ``sqlite3 state.db .dump``; the commit is named
in its first line): service ``web`` READY on the local provider, replica 1
TERMINATED (its process was killed: FAILED), replicas 2 and 3 READY, their
events. Opening it here runs the pending migrations; nothing of its history may
be lost, and what it records must keep meaning what it meant (its replicas'
cost above all). A database of a newer skyctl is refused, and left as it was.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from skyctl.errors import SchemaVersionError
from skyctl.lifecycle import ReplicaStatus
from skyctl.store import SCHEMA_VERSION, Store
from skyctl.store import migrations as mig

DATA = Path(__file__).resolve().parent / "data" / "upgrade"
OLD_SCHEMAS = sorted(int(p.stem.split("-")[1]) for p in DATA.glob("schema-*.sql"))
HOUR = 3600.0


def load(db: Path, version: int) -> None:
    """A state database as skyctl at schema ``version`` left it."""
    db.parent.mkdir(mode=0o700, exist_ok=True)
    conn = sqlite3.connect(db)
    try:
        conn.executescript((DATA / f"schema-{version}.sql").read_text())
    finally:
        conn.close()


def raw(db: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def shape(db: Path) -> dict[str, object]:
    """Every table's columns (name, type, not null, default, key) and every index."""
    conn = sqlite3.connect(db)
    try:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        out: dict[str, object] = {
            t: [r[1:] for r in conn.execute(f"PRAGMA table_info({t})")] for t in names
        }
        out["indexes"] = conn.execute(
            "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' ORDER BY name"
        ).fetchall()
        return out
    finally:
        conn.close()


def test_there_is_a_captured_database_for_every_released_schema_before_the_latest() -> None:
    # schema 1 never shipped (the first commit with a store was already at 2); a new
    # migration's release adds the schema it leaves behind here
    assert OLD_SCHEMAS == list(range(2, SCHEMA_VERSION)), (
        "capture the schema your migration leaves behind: run the commit before it "
        "(docs/reliability.md#upgrading-skyctl) and `sqlite3 state.db .dump` into "
        f"tests/data/upgrade/schema-{SCHEMA_VERSION - 1}.sql"
    )
    assert SCHEMA_VERSION > OLD_SCHEMAS[-1]


@pytest.mark.parametrize("version", OLD_SCHEMAS)
def test_an_older_database_migrates_to_the_latest_schema_keeping_its_history(
    tmp_path: Path, version: int
) -> None:
    db = tmp_path / "state" / "state.db"
    load(db, version)
    with Store(db) as store:
        [svc] = store.list_services()
        replicas = store.list_replicas("web", include_terminated=True)
        events = store.events("web", limit=100)
        spec = store.get_version("web", 1)
    assert raw(db, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
    assert (svc.name, svc.status.value, svc.current_version) == ("web", "READY", 1)
    assert [(r.replica_id, r.status) for r in replicas] == [
        (1, ReplicaStatus.TERMINATED),
        (2, ReplicaStatus.READY),
        (3, ReplicaStatus.READY),
    ]
    assert all(r.instance_id and r.endpoint for r in replicas)
    assert replicas[0].end_reason is not None and replicas[0].end_reason.value == "FAILED"
    assert "http.server" in spec.yaml_text and spec.update_mode == "rolling"
    kinds = [e.kind for e in events]
    assert kinds.count("launch") == 3 and kinds.count("ready") == 3 and "failed" in kinds
    fresh = tmp_path / "fresh.db"
    Store(fresh).close()
    assert shape(db) == shape(fresh)  # as if it had been created by this version


@pytest.mark.parametrize("version", OLD_SCHEMAS)
def test_an_older_databases_replicas_keep_billing_after_the_upgrade(
    tmp_path: Path, version: int
) -> None:
    """Schemas 2 and 3 predate cost accounting: migration 4 left their replicas'
    billed_from empty, and a replica with none costs nothing, so after an upgrade
    two live replicas at $1/h accrued $0 for ever (and `serve cost` listed none)."""
    db = tmp_path / "state" / "state.db"
    load(db, version)
    with Store(db) as store:
        svc = store.get_service("web")
        assert svc is not None
        replicas = {r.replica_id: r for r in store.list_replicas("web", include_terminated=True)}
        later = max(r.updated_at for r in replicas.values()) + HOUR
        total = store.cost_total("web", later, since=svc.created_at)
        report = store.cost_report("web", float("-inf"), later)
    assert all(r.price == 1.0 for r in replicas.values())
    ended = replicas[1]
    assert ended.billed_from is not None and ended.terminated_at is not None
    assert ended.billed_from <= ended.terminated_at
    assert total.replicas == 3
    # replicas 2 and 3 billed at least the hour since, at $1/h each, and 1 its lifetime
    assert total.cost >= 2.0
    assert total.cost == pytest.approx(
        sum(
            (min(later, r.terminated_at or later) - (r.billed_from or 0.0)) / HOUR
            for r in replicas.values()
        )
    )
    assert report.total.replicas == 3 and report.total.cost == pytest.approx(total.cost)


def test_billing_is_not_invented_for_a_replica_that_never_had_an_instance(
    tmp_path: Path,
) -> None:
    db = tmp_path / "state" / "state.db"
    load(db, 3)
    conn = sqlite3.connect(db)
    with conn:  # a launch that failed before an instance existed (schema 3: no cost columns)
        conn.execute(
            "INSERT INTO replicas SELECT service, 4, version, 'TERMINATED', 'FAILED_PROVISION', "
            "cloud, region, zone, spot, price, instance_type, NULL, NULL, 'token-4', "
            "created_at, updated_at, status_since, NULL, updated_at, 0, NULL, 3 "
            "FROM replicas WHERE replica_id = 1"
        )
    conn.close()
    with Store(db) as store:
        never = store.get_replica("web", 4)
        kept = store.get_replica("web", 2)
    assert never is not None and never.billed_from is None
    assert kept is not None and kept.billed_from == kept.created_at


def test_a_database_billed_since_schema_4_keeps_its_billing_start(tmp_path: Path) -> None:
    db = tmp_path / "state" / "state.db"
    load(db, 6)
    before = raw(db, "SELECT replica_id, billed_from FROM replicas ORDER BY replica_id")
    Store(db).close()
    after = raw(db, "SELECT replica_id, billed_from FROM replicas ORDER BY replica_id")
    assert after == before and all(b is not None for _, b in before)


def test_a_database_of_a_newer_skyctl_is_refused_in_one_line_and_left_unchanged(
    tmp_path: Path,
) -> None:
    """A downgrade: the newer release added a table and bumped the version."""
    db = tmp_path / "state" / "state.db"
    load(db, 6)
    Store(db).close()
    newer = SCHEMA_VERSION + 1
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("CREATE TABLE from_the_future (x INTEGER)")
        conn.execute(f"UPDATE schema_version SET version = {newer}")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = db.read_bytes()
    with pytest.raises(SchemaVersionError) as refused:
        Store(db)
    message = str(refused.value)
    assert "\n" not in message
    assert f"schema version {newer} but this skyctl knows up to {SCHEMA_VERSION}" in message
    assert "left unchanged" in message
    assert db.read_bytes() == before
    assert mig.LATEST == SCHEMA_VERSION
