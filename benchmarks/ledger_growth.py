"""How the cost ledger grows on disk and in the controller's memory, per simulated day.

A service of ``--replicas`` spot replicas (default 100) each preempted once an
hour, over ``--days`` days (default 60), in 4 zones: ``replicas x 24`` ended
replicas a day reach the ledger (as ``Store.purge_terminated`` copies them).
With ``--no-fold`` the rows stay for good (before: the ledger kept one per
replica); by default the controller's folding runs each day (rows of replicas
that ended over ``LEDGER_KEEP_SECONDS`` ago become per-day totals).

Measured at each checkpoint: the database's used bytes ((pages - free pages) x
page size), the rows in each ledger table, and, by tracemalloc, what a fresh
controller's store keeps after `serve status`'s cost, a /metrics scrape and the
console's cost curve (Python allocations; ``--no-fold`` also shows what the old
``Ledger`` kept: a ``BilledSpan`` per row), and the peak while `serve cost`
sums everything. The growth per day over the last half of the run, times 365,
is the year's. Run: ``nice -n 10 python benchmarks/ledger_growth.py [--no-fold]``.
"""

from __future__ import annotations

import argparse
import math
import sqlite3
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skyctl.controller.retention import FOLD_BATCH, LEDGER_KEEP_SECONDS
from skyctl.store import Store

DAY = 86400.0
START = 19676 * DAY  # a UTC midnight
COLS = (
    "service, replica_id, cloud, region, zone, spot, instance_type, price, ondemand_price, "
    "end_reason, created_at, billed_from, terminated_at, had_notice, launch_attempts"
)


def day_rows(day: int, replicas: int, first_id: int) -> list[tuple[Any, ...]]:
    rows = []
    for hour in range(24):
        for r in range(replicas):
            at = START + day * DAY + hour * 3600.0 + (r * 37) % 600
            rows.append(
                (
                    "llm",
                    first_id + len(rows),
                    "aws",
                    "us-east-1",
                    f"us-east-1{'abcd'[r % 4]}",
                    True,
                    "g5.xlarge",
                    0.42 + (r % 4) * 0.01,
                    1.006,
                    "PREEMPTED",
                    at,
                    at + 60.0,
                    at + 3540.0 + (r * 13) % 120,
                    r % 2 == 0,
                    1,
                )
            )
    return rows


def used_bytes(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)
    finally:
        conn.close()


def count(db: Path, table: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def traced(fn: Any) -> tuple[int, int]:
    """(bytes ``fn``'s result and side effects keep, peak bytes while it ran)."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        keep = fn()
        now, peak = tracemalloc.get_traced_memory()
        del keep
        return now - base, peak - base
    finally:
        tracemalloc.stop()


def controller_memory(db: Path, now: float, created: float, old_style: bool) -> tuple[int, int]:
    with Store(db) as store:
        store.cost_total("llm", now, since=created)  # compile the queries once

        def controller() -> Any:
            store._ledger = type(store._ledger)()  # a controller just started
            store.cost_total("llm", now, since=created)  # serve status
            store.cost_facts(now)  # a /metrics scrape
            times = [created + i * (now - created) / 59 for i in range(60)]
            store.cost_series("llm", times, since=created)  # the console's curve
            # the old Ledger kept a BilledSpan per row, for good
            return store.billed_spans("llm") if old_style else None

        kept, _ = traced(controller)
        _, peak = traced(lambda: store.cost_report(None, -math.inf, now).as_dict())
    return kept, peak


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--replicas", type=int, default=100)
    ap.add_argument("--no-fold", action="store_true", help="keep every row (as before)")
    args = ap.parse_args(argv)
    if args.days < 2 or args.replicas < 1:
        ap.error(f"--days must be 2 or more and --replicas 1 or more, got {args.days}")
    fold = not args.no_fold
    checks = sorted({args.days // 4, args.days // 2, 3 * args.days // 4, args.days})
    samples: list[tuple[int, int, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "state.db"
        with Store(db) as store:
            store.create_service("llm", "name: llm\n", now=START)
        next_id = 1
        how = f"folding (keep {LEDGER_KEEP_SECONDS / DAY:.0f} days, batches of {FOLD_BATCH})"
        print(f"{args.replicas} spot replicas preempted hourly, {how if fold else 'no folding'}")
        print("day  ledger rows  day rows  disk MB  controller kept KB  serve cost peak KB")
        for day in range(args.days):
            rows = day_rows(day, args.replicas, next_id)
            next_id += len(rows)
            conn = sqlite3.connect(db)
            marks = ", ".join("?" * len(rows[0]))
            conn.executemany(f"INSERT INTO replica_ledger ({COLS}) VALUES ({marks})", rows)
            conn.commit()
            conn.close()
            now = START + (day + 1) * DAY
            if fold:
                with Store(db) as store:
                    t0 = time.perf_counter()
                    folded = 0
                    while n := store.fold_ledger(
                        before=now - LEDGER_KEEP_SECONDS, limit=FOLD_BATCH
                    ):
                        folded += n
                    spent = time.perf_counter() - t0
                if day + 1 == args.days and folded:
                    print(f"  (the last day's fold: {folded} rows in {spent * 1000:.0f} ms)")
            if day + 1 in checks:
                kept, peak = controller_memory(db, now, START, old_style=not fold)
                disk = used_bytes(db)
                samples.append((day + 1, disk, kept))
                print(
                    f"{day + 1:>3}  {count(db, 'replica_ledger'):>11,}  "
                    f"{count(db, 'replica_ledger_days'):>8,}  {disk / 1e6:>7.2f}  "
                    f"{kept / 1024:>18,.0f}  {peak / 1024:>18,.0f}"
                )
    (d0, disk0, mem0), (d1, disk1, mem1) = samples[len(samples) // 2 - 1], samples[-1]
    per_day_disk = (disk1 - disk0) / (d1 - d0)
    per_day_mem = (mem1 - mem0) / (d1 - d0)
    print(
        f"growth per day from day {d0} to {d1}: disk {per_day_disk / 1024:,.1f} KB, "
        f"controller memory {per_day_mem / 1024:,.1f} KB; a year: disk "
        f"{per_day_disk * 365 / 1e6:,.1f} MB, memory {per_day_mem * 365 / 1e6:,.1f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
