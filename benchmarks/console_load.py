"""What one console update and one /metrics scrape cost with a long history.

A service with ``N`` ended replicas in the ledger (default 10,000: months of
preemptions) and 4 live ones. Both run in the controller's event loop, so they
must stay far below the 1 s update period. Run: ``python
benchmarks/console_load.py [N]``. Prints the mean time of each, and of the
first update (which reads the ledger; later ones read only new rows).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from providers.registry import ProviderSet
from skyctl.clock import FakeClock
from skyctl.console.snapshot import Rates, build
from skyctl.console.web import environment, update
from skyctl.controller import Controller
from skyctl.lifecycle import EndReason, ReplicaStatus
from skyctl.store import Store
from skyctl.types import Location

SPEC = "name: hist\nservice:\n  readiness_probe: /\n  replicas: 4\nrun: serve\n"


def fill(store: Store, n: int, now: float) -> None:
    store.create_service("hist", SPEC, now=now - 10 * n)
    with store.transaction():
        for i in range(n + 4):
            t = now - 10 * (n - i)
            r = store.add_replica(
                "hist",
                version=1,
                location=Location("aws", "us-east-1", f"us-east-1{'abc'[i % 3]}"),
                spot=True,
                price=0.9,
                instance_type="p3.2xlarge",
                client_token=f"t{i}",
                now=t,
                ondemand_price=3.06,
            )
            store.update_replica("hist", r.replica_id, now=t, status=ReplicaStatus.PROVISIONING)
            store.update_replica(
                "hist", r.replica_id, now=t, status=ReplicaStatus.STARTING, instance_id=f"i{i}"
            )
            if i < n:
                store.update_replica(
                    "hist",
                    r.replica_id,
                    now=t + 30,
                    status=ReplicaStatus.TERMINATED,
                    reason=EndReason.PREEMPTED,
                )
    store.purge_terminated("hist", before=now)  # into the ledger, as after an hour


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "rows", nargs="?", type=int, default=10_000, help="ended replicas in the ledger"
    )
    n = parser.parse_args().rows
    clock = FakeClock(1_800_000_000.0)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "state.db")
        fill(store, n, clock.now())
        providers = ProviderSet(config={}, clock=clock, local_state=Path(tmp) / "local")
        controller = Controller(store, providers, clock)
        env, rates = environment(), Rates()
        rounds = 10
        t = time.perf_counter()
        update(env, build(controller, rates))  # the first reads the ledger once
        first = time.perf_counter() - t
        t0 = time.perf_counter()
        for _ in range(rounds):
            size = len(str(update(env, build(controller, rates))))
        upd = (time.perf_counter() - t0) / rounds
        t1 = time.perf_counter()
        for _ in range(rounds):
            controller.metrics.render()
        scrape = (time.perf_counter() - t1) / rounds
        store.close()
    print(
        f"{n:,} ended replicas in the ledger + 4 live: console update {upd * 1000:.1f} ms "
        f"({size / 1024:.0f} KiB; the first, reading the ledger, {first * 1000:.0f} ms), "
        f"/metrics scrape {scrape * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
