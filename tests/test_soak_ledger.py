"""Soak: `serve status`'s accrued cost reads the cost ledger incrementally.

The ledger keeps a row per ended replica for good (docs/reliability.md,
"Long-running operation"). `serve status` (``Store.cost_total`` at now) rebuilt
a cost curve over every one of a service's ledger rows after each purge (every 5
minutes), on the controller's event loop: 1.7 s per 100,000 rows on a loaded
machine. Now each row is summed once, as it arrives; the curve is built only
for a time before some purged replica ended (the console's history)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skyctl.lifecycle import EndReason
from skyctl.lifecycle import ReplicaStatus as S
from skyctl.store import Store, costs
from tests.test_costs import _replica


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "state.db")
    s.create_service("svc", "name: svc\n", now=0.0)
    yield s
    s.close()


def _ended(store: Store, start: float, seconds: float) -> None:
    rid = _replica(store, start)
    store.update_replica("svc", rid, now=start, status=S.PROVISIONING)
    store.update_replica("svc", rid, now=start, status=S.STARTING, instance_id=f"i-{rid}")
    store.update_replica(
        "svc", rid, now=start + seconds, status=S.TERMINATED, reason=EndReason.PREEMPTED
    )


def test_status_cost_sums_each_purged_replica_once_and_builds_no_curve(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[int] = []
    real_curve = costs.Curve

    class CountingCurve(real_curve):  # type: ignore[misc, valid-type]
        def __init__(self, spans):  # type: ignore[no-untyped-def]
            spans = list(spans)
            built.append(len(spans))
            super().__init__(spans)

    monkeypatch.setattr(costs, "Curve", CountingCurve)
    now = 0.0
    for batch in range(3):  # three purges, 200 replicas each, an hour apart
        for i in range(200):
            _ended(store, 10.0 * (batch * 1000 + i), 600.0)
        now = 10.0 * (batch * 1000 + 200) + 7200.0
        store.purge_terminated("svc", before=now - 3600.0)
        got = store.cost_total("svc", now, since=0.0)
        expect = costs.total(store.billed_spans("svc"), float("-inf"), now)
        assert got.replicas == expect.replicas == 200 * (batch + 1)
        assert got.cost == pytest.approx(expect.cost)
        assert got.ondemand_cost == pytest.approx(expect.ondemand_cost)
    assert [n for n in built if n >= 200] == []  # no curve over the ledger's rows
    # a time before the purged replicas ended still answers (from the curve)
    early = store.cost_total("svc", 300.0, since=0.0)
    assert early.cost == pytest.approx(
        costs.total(store.billed_spans("svc"), float("-inf"), 300.0).cost
    )
