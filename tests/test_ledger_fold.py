"""The cost ledger stays bounded: old rows fold into per-day totals, figures unchanged.

Every consumer of the ledger (`serve status`'s accrued cost, `serve cost`, the
console's cost curve, the Prometheus counters) reads the same totals before and
after folding, to float precision; a database of the previous schema with
ledger rows in it is migrated and folds the same way; folding runs in a worker
thread, a bounded batch at a time, retried with backoff when it fails; and
nothing that reads the ledger holds a Python object per row.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skyctl.controller import retention
from skyctl.errors import StoreError
from skyctl.lifecycle import EndReason
from skyctl.lifecycle import ReplicaStatus as S
from skyctl.store import SCHEMA_VERSION, Store
from skyctl.store import migrations as mig
from skyctl.types import Location

DAY = 86400.0
BASE = 19676 * DAY  # a UTC midnight (2023-11-15)
CREATED = BASE + 2 * DAY + 3 * 3600.0  # the current "svc"; its rows before are an earlier one's
NOW = BASE + 20 * DAY
PLACES = (
    Location("aws", "us-east-1", "us-east-1a"),
    Location("aws", "us-east-1", "us-east-1b"),
    Location("gcp", "us-central1", "us-central1-a"),
)
REASONS = ("PREEMPTED", "FAILED", "SCALED_DOWN", None, "FAILED_PROVISION", "PREEMPTED")
COLS = (
    "service, replica_id, cloud, region, zone, spot, instance_type, price, ondemand_price, "
    "end_reason, created_at, billed_from, terminated_at, had_notice, launch_attempts"
)


def ledger_rows(n: int, *, start: float = BASE, step: float = 1300.0) -> list[tuple[Any, ...]]:
    """``n`` ended replicas over days: some cross midnight, some never billed, three
    places, both kinds, a service deleted since ("old") and the current one's
    predecessor of the same name (rows before CREATED)."""
    rows = []
    for i in range(n):
        at = start + i * step + (i % 7) * 97.0
        seconds = 600.0 + (i * 4721) % 30000
        loc = PLACES[i % 3]
        reason = REASONS[i % len(REASONS)]
        billed = None if reason == "FAILED_PROVISION" else at + 30.0
        rows.append(
            (
                "old" if i % 11 == 0 else "svc",
                i + 1,
                loc.cloud,
                loc.region,
                loc.zone,
                i % 4 != 0,
                "p3.2xlarge" if i % 5 else "g5.xlarge",
                0.9 + (i % 4) * 0.1,
                None if i % 9 == 0 else 3.06,
                reason,
                at,
                billed,
                at + 30.0 + seconds,
                i % 3 == 0,
                1 + i % 2,
            )
        )
    return rows


def insert_rows(db: Path, rows: list[tuple[Any, ...]]) -> None:
    conn = sqlite3.connect(db)
    marks = ", ".join("?" * len(rows[0]))
    conn.executemany(f"INSERT INTO replica_ledger ({COLS}) VALUES ({marks})", rows)
    conn.commit()
    conn.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    s = Store(db)
    s.create_service("svc", "name: svc\n", now=CREATED)
    yield s
    s.close()


def count(db: Path, table: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


MIDNIGHTS = [BASE + k * DAY for k in (1, 3, 4, 6, 9, 11)]


def figures(store: Store) -> dict[str, Any]:
    """Every figure the ledger's consumers show, flattened to name -> number."""
    out: dict[str, Any] = {}

    def put(prefix: str, value: Any) -> None:
        if isinstance(value, dict | tuple):
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for k, v in items:
                put(f"{prefix}.{k}", v)
        else:
            out[prefix] = value

    for name, since in (("svc", CREATED), ("svc", -math.inf), (None, -math.inf)):
        for now in (NOW, *MIDNIGHTS):  # serve status (now), and at past midnights
            put(f"total.{name}.{since}.{now}", store.cost_total(name, now, since=since).as_dict())
    times = [NOW, *MIDNIGHTS]
    put(
        "curve.svc",
        {str(t): v for t, v in zip(times, store.cost_series("svc", times), strict=True)},
    )
    put("curve.own", dict(enumerate(store.cost_series("svc", times, since=CREATED))))
    for key, f in store.cost_facts(NOW).items():
        put(f"facts.{key}", {**f.__dict__, "failures": dict(f.failures)})
    put("report", store.cost_report(None, -math.inf, NOW).as_dict())
    put("report.svc", store.cost_report("svc", -math.inf, NOW).as_dict())
    for a, b in ((MIDNIGHTS[0], MIDNIGHTS[2]), (MIDNIGHTS[1], MIDNIGHTS[4]), (MIDNIGHTS[3], NOW)):
        put(f"report.{a}.{b}", store.cost_report(None, a, b).as_dict())
    put("recent", store.cost_report(None, NOW - 7 * DAY, NOW).as_dict())  # `--since 7d`
    return out


def assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert before.keys() == after.keys()
    for key, want in before.items():
        if isinstance(want, float):
            assert after[key] == pytest.approx(want, rel=1e-9, abs=1e-6), key
        else:
            assert after[key] == want, key


def test_folding_keeps_every_consumers_totals(store: Store, db: Path) -> None:
    insert_rows(db, ledger_rows(600))  # ~9 days; the last ended on day 9
    before = figures(store)
    assert before["report.total.replicas"] > 400 and before["report.total.accrued_cost"] > 100
    assert store.fold_ledger(before=BASE + 5 * DAY, limit=10_000) > 0  # a part: days and rows
    assert 0 < count(db, "replica_ledger") < 600
    assert_same(before, figures(store))
    while store.fold_ledger(before=NOW, limit=97):  # the rest, in batches into the same days
        pass
    assert count(db, "replica_ledger") == 0
    assert count(db, "replica_ledger_days") < 300  # varied on purpose: see the benchmark
    after = figures(store)
    assert_same(before, after)
    for key, cost in before.items():  # a counter a rounding lower would read as a reset
        if key.startswith("facts.") and key.endswith(".cost"):
            assert after[key] == cost, key


def test_a_new_service_of_an_old_name_starts_at_zero_after_folding(store: Store, db: Path) -> None:
    insert_rows(db, ledger_rows(200))
    store.fold_ledger(before=NOW, limit=10_000)
    store.delete_service("svc")
    store.create_service("svc", "name: svc\n", now=NOW)
    assert store.cost_total("svc", NOW + 10, since=NOW).as_dict()["accrued_cost"] == 0.0
    assert store.cost_series("svc", [NOW + 10], since=NOW) == [(0.0, 0.0)]
    assert store.cost_total("svc", NOW + 10).cost > 0  # the name's history is kept


def test_replicas_purged_through_the_store_fold_with_their_facts(store: Store, db: Path) -> None:
    for i, start in enumerate((CREATED + 100.0, CREATED + DAY - 600.0)):  # one crosses midnight
        rid = store.add_replica(
            "svc",
            version=1,
            location=PLACES[0],
            spot=True,
            price=0.9,
            instance_type="p3.2xlarge",
            client_token=f"tok-{i}",
            now=start,
            ondemand_price=3.06,
        ).replica_id
        store.update_replica("svc", rid, now=start, status=S.PROVISIONING)
        store.update_replica("svc", rid, now=start, status=S.STARTING, instance_id=f"i-{rid}")
        store.update_replica("svc", rid, now=start + 500, interruption_at=start + 500)
        store.update_replica(
            "svc", rid, now=start + 3600, status=S.TERMINATED, reason=EndReason.PREEMPTED
        )
    store.purge_terminated("svc", before=NOW)
    before = figures(store)
    assert store.fold_ledger(before=NOW, limit=10) == 2
    after = figures(store)
    assert_same(before, after)
    facts = store.cost_facts(NOW)[("svc", str(PLACES[0]), "spot")]
    assert (facts.preemptions, facts.notices, facts.cost) == (2, 2, pytest.approx(1.8))


def test_a_previous_schema_database_with_ledger_rows_is_migrated_and_folds(db: Path) -> None:
    old = [m for m in mig.MIGRATIONS if m.version <= 6]  # the schema before the ledger's days
    assert old[-1].version == 6
    conn = sqlite3.connect(db)
    for m in old:
        for statement in m.statements:
            conn.execute(statement)
    conn.execute("UPDATE schema_version SET version = 6")
    conn.execute(
        "INSERT INTO services (name, status, current_version, router_host, router_port,"
        " next_replica_id, created_at, updated_at) VALUES ('svc', 'READY', 1, 'h', 1, 1, ?, ?)",
        (CREATED, CREATED),
    )
    conn.commit()
    conn.close()
    insert_rows(db, ledger_rows(300))
    with Store(db) as s:
        assert count(db, "replica_ledger") == 300  # kept through the migration
        before = figures(s)
        assert s.fold_ledger(before=NOW, limit=10_000) == 300
        assert_same(before, figures(s))
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    conn.close()


def test_a_fold_takes_a_bounded_batch_of_the_oldest_rows(store: Store, db: Path) -> None:
    insert_rows(db, ledger_rows(50))
    assert not store.ledger_foldable(before=BASE)
    assert store.ledger_foldable(before=NOW)
    assert store.fold_ledger(before=NOW, limit=20) == 20
    assert count(db, "replica_ledger") == 30
    conn = sqlite3.connect(db)
    (oldest_left,) = conn.execute("SELECT min(terminated_at) FROM replica_ledger").fetchone()
    (folded,) = conn.execute("SELECT folded FROM ledger_folds").fetchone()
    conn.close()
    assert folded == 20
    assert oldest_left >= max(r[12] for r in sorted(ledger_rows(50), key=lambda r: r[12])[:20])
    assert store.fold_ledger(before=BASE, limit=20) == 0  # none ended that early


# -- memory -------------------------------------------------------------------------


def retained(fn: Any) -> tuple[int, int]:
    """(bytes still allocated after ``fn``, peak bytes during it), by tracemalloc."""
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        keep = fn()
        now, peak = tracemalloc.get_traced_memory()
        del keep
        return now - start, peak - start
    finally:
        tracemalloc.stop()


def test_status_and_metrics_hold_no_object_per_ledger_row(store: Store, db: Path) -> None:
    insert_rows(db, ledger_rows(20_000, step=40.0))
    store.cost_total("svc", NOW, since=CREATED)  # warm (the first call compiles SQL)
    store.cost_facts(NOW)

    def read() -> None:
        store._ledger = type(store._ledger)()  # a fresh cache, as after a controller start
        store.cost_total("svc", NOW, since=CREATED)
        store.cost_total(None, NOW)
        store.cost_facts(NOW)

    kept, _ = retained(read)
    assert kept < 200_000  # a row object each was ~430 bytes: 8.6 MB


def test_serve_cost_and_the_curve_of_a_folded_ledger_load_no_row_each(
    store: Store, db: Path
) -> None:
    insert_rows(db, ledger_rows(20_000, step=40.0))
    store.cost_report(None, -math.inf, NOW)  # warm

    _, peak = retained(lambda: store.cost_report(None, -math.inf, NOW).as_dict())
    assert peak < 2_000_000  # streamed (all the spans in a list: ~9 MB)
    while store.fold_ledger(before=NOW, limit=5000):
        pass
    store.cost_series("svc", [NOW])

    def curve() -> None:
        store._ledger = type(store._ledger)()
        store.cost_series("svc", [NOW - DAY, NOW], since=-math.inf)

    kept, _ = retained(curve)
    assert kept < 100_000  # one segment a folded day


# -- the controller's side: off the event loop, bounded, retried ------------------------


async def test_the_controller_folds_in_a_worker_thread_a_batch_per_tick(
    store: Store, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    insert_rows(db, ledger_rows(10))
    before = store.cost_total(None, NOW)
    monkeypatch.setattr(retention, "FOLD_BATCH", 4)
    threads: list[int] = []
    real = store.fold_ledger

    def fold(**kw: Any) -> int:
        threads.append(threading.get_ident())
        return real(**kw)

    monkeypatch.setattr(store, "fold_ledger", fold)
    folding = retention.LedgerFolding()
    for _ in range(10):
        folding.poke(store, NOW)
        if folding.task is not None:
            await folding.task
    assert count(db, "replica_ledger") == 0 and folding.folded == 10
    assert len(threads) == 3 and threading.get_ident() not in threads  # 4 + 4 + 2, not here
    assert store.cost_total(None, NOW).as_dict() == pytest.approx(before.as_dict())
    folding.poke(store, NOW + 1)  # the last batch was short: not due again for a while
    assert folding.task is None and folding.due == NOW + retention.PURGE_EVERY_SECONDS


async def test_a_failed_fold_is_shown_and_retried_with_backoff(
    store: Store, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    insert_rows(db, ledger_rows(10))
    real = store.fold_ledger

    def locked(**_kw: Any) -> int:
        raise StoreError("state database x: folding the cost ledger failed: database is locked")

    monkeypatch.setattr(store, "fold_ledger", locked)
    folding = retention.LedgerFolding()
    waits = []
    now = NOW
    for _ in range(8):
        folding.poke(store, now)
        assert folding.task is not None
        await asyncio.wait([folding.task])
        folding.poke(store, now)  # collects the failure
        assert "database is locked" in folding.last_error
        waits.append(folding.due - now)
        now = folding.due
    assert waits == [60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 3600.0, 3600.0]
    monkeypatch.setattr(store, "fold_ledger", real)
    folding.poke(store, now)
    assert folding.task is not None
    await folding.task
    folding.poke(store, now)
    assert folding.last_error == "" and folding.failures == 0
    assert count(db, "replica_ledger") == 0


def test_a_fold_whose_rows_went_meanwhile_writes_nothing(store: Store, db: Path) -> None:
    from skyctl.store import ledger

    insert_rows(db, ledger_rows(30))
    before = figures(store)
    with store._read() as conn:
        plan = ledger.plan_fold(conn, NOW, 30)
    assert plan is not None
    assert store.fold_ledger(before=NOW, limit=10) == 10  # another fold took 10 of them
    with pytest.raises(StoreError, match="changed while folding"), store._write() as conn:
        ledger.apply_fold(conn, plan)
    assert count(db, "replica_ledger") == 20  # rolled back: nothing counted twice
    assert_same(before, figures(store))
