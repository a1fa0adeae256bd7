"""The store's cost queries (a part of :class:`~skyctl.store.store.Store`).

Sums over the replicas' rows, which are few, plus the ledger's cached sums
(:class:`~skyctl.store.ledger.Ledger`), so a console redrawing every second and
a metrics scrape stay cheap however long the history. See
:mod:`skyctl.store.costs` for which time bills and :mod:`skyctl.store.ledger`
for how the ledger stays bounded.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import replace

from sqlalchemy import Connection

from skyctl.store import costs, ledger


class CostQueries:
    """Mixed into :class:`~skyctl.store.store.Store`, which provides these two."""

    _ledger: ledger.Ledger

    def _read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def billed_spans(
        self, name: str | None = None, *, purged: bool = True
    ) -> list[costs.BilledSpan]:
        """Every replica's billed interval and prices, the ledger's rows not yet folded
        too unless asked (all services when ``name`` is None); :mod:`skyctl.store.costs`
        sums them. Folded days are not spans: :meth:`cost_report` sums everything."""
        with self._read() as conn:
            return list(ledger.spans(conn, name, purged))

    def cost_report(self, name: str | None, start: float, end: float) -> costs.Report:
        """`serve cost`'s report over [start, end] (``start`` -inf: from the first bill):
        every replica, the ledger's rows and its folded days, streamed, not loaded."""
        with self._read() as conn:
            return ledger.report(conn, name, start, end)

    def cost_total(
        self, name: str | None, now: float, *, since: float = float("-inf")
    ) -> costs.CostTotals:
        """Everything accrued up to ``now`` by replicas that started billing at ``since``
        (a service's creation time) or later: the replicas' rows plus the ledger's
        cached sums."""
        mine = [s for s in self.billed_spans(name, purged=False) if _since(s, since)]
        live = costs.total(mine, float("-inf"), now)
        with self._read() as conn:
            kept = self._ledger.totals(conn, name, since, now)
        return costs.CostTotals(
            live.replicas + kept.replicas,
            live.replica_seconds + kept.replica_seconds,
            live.cost + kept.cost,
            live.ondemand_cost + kept.ondemand_cost,
        )

    def cost_series(
        self, name: str, times: list[float], *, since: float = float("-inf")
    ) -> list[tuple[float, float]]:
        """(cost, on-demand equivalent) accrued up to each of ``times`` (USD) by replicas
        that started billing at ``since`` (a service's creation time) or later."""
        live = costs.Curve(s for s in self.billed_spans(name, purged=False) if _since(s, since))
        with self._read() as conn:
            kept = self._ledger.curve(conn, name, since)
        return [(a[1] + b[1], a[2] + b[2]) for a, b in ((live.at(t), kept.at(t)) for t in times)]

    def cost_facts(self, now: float) -> dict[tuple[str, str, str], costs.Facts]:
        """Counters per (service, location, kind) for metrics, purged replicas included.
        Cost in whole micro-dollars: folding the ledger sums the same figures in another
        order, and a counter a float rounding lower would read as a reset."""
        with self._read() as conn:
            out = dict(self._ledger.facts(conn))
        for s in self.billed_spans(purged=False):
            key = costs.fact_key(s)
            mine = costs.Facts()
            mine.add(s, now)
            out[key] = out[key].plus(mine) if key in out else mine
        return {k: replace(f, cost=round(f.cost, 6)) for k, f in out.items()}


def _since(span: costs.BilledSpan, since: float) -> bool:
    return span.billed_from is not None and span.billed_from >= since
