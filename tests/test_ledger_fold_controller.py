"""A running controller folds the cost ledger's old rows by itself, off its event loop.

Rows of replicas that ended more than ``LEDGER_KEEP_SECONDS`` ago (here of a
service deleted long since, which no tick of its own would ever reach) are
folded while another service ticks; `serve status`'s total stays the same."""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

import pytest

from skyctl.controller.retention import LEDGER_KEEP_SECONDS
from tests.test_controller import FIXED, Harness
from tests.test_ledger_fold import COLS


def ledger_count(h: Harness) -> int:
    conn = sqlite3.connect(h.store.path)
    try:
        return int(conn.execute("SELECT count(*) FROM replica_ledger").fetchone()[0])
    finally:
        conn.close()


async def test_a_running_controller_folds_old_ledger_rows_in_a_worker_thread(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = h.clock.now() - LEDGER_KEEP_SECONDS - 3 * 86400.0
    place = ("aws", "us-east-1", "us-east-1a", True, "t", 0.9, 3.06, "PREEMPTED")
    rows = [
        ("gone", i, *place, old + 60.0 * i, old + 60.0 * i, old + 60.0 * i + 3000.0, False, 1)
        for i in range(1, 51)
    ]
    conn = sqlite3.connect(h.store.path)
    conn.executemany(f"INSERT INTO replica_ledger ({COLS}) VALUES ({', '.join('?' * 15)})", rows)
    conn.commit()
    conn.close()
    before = h.store.cost_total("gone", h.clock.now()).as_dict()
    threads: list[int] = []
    real = h.store.fold_ledger

    def fold(**kw: Any) -> int:
        threads.append(threading.get_ident())
        return real(**kw)

    monkeypatch.setattr(h.store, "fold_ledger", fold)
    await h.controller.create_service(FIXED.format(name="web", replicas=1), None)
    await h.until(lambda: ledger_count(h) == 0)
    assert threads and threading.get_ident() not in threads
    assert h.store.cost_total("gone", h.clock.now()).as_dict() == pytest.approx(before)
    assert h.controller.reconciler.folding.last_error == ""
