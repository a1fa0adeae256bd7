"""Cost accounting: what each replica's instance has cost, and what it would on demand.

Which time bills: a cloud bills an instance from its launch to its
termination, whatever the replica's readiness. The store marks the start when
it first learns the replica's instance (the launch returned its id:
``billed_from``) and the end when the replica reached TERMINATED (termination
verified, or the instance found gone, e.g. preempted). So STARTING, READY,
NOT_READY and SHUTTING_DOWN all bill (a terminate not yet verified may still be
running up a bill); a replica whose launch failed never had an instance and
costs nothing. The price is the one recorded at launch, in USD per hour.

cost = billed seconds x price / 3600, per replica, and summed per service,
location and cloud. The on-demand equivalent uses the on-demand price of the
same location and instance type, recorded at launch; where none was known the
replica's own price stands in (it saves nothing). Savings = on-demand
equivalent - cost.

Ended replicas are copied into ``replica_ledger`` before their rows are purged
or their service deleted, so totals and counters never shrink. Everything here
is pure apart from :func:`spans` and :func:`keep_in_ledger`, which the store
calls inside its transactions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, insert, select

from skyctl.store import schema as t
from skyctl.types import Location


@dataclass(frozen=True)
class BilledSpan:
    """One replica's billed interval and prices (live, ended, or kept in the ledger)."""

    service: str
    replica_id: int
    location: Location
    spot: bool
    instance_type: str
    price: float  # USD per hour
    ondemand_price: float | None  # USD per hour on demand, same location and type
    billed_from: float | None  # None: never had an instance
    billed_until: float | None  # None: still billing
    end_reason: str | None
    had_notice: bool
    launch_attempts: int
    purged: bool  # only in the ledger now

    def seconds(self, start: float, end: float) -> float:
        """Billed seconds inside [start, end] (``end`` stands for "now" when still billing)."""
        if self.billed_from is None:
            return 0.0
        until = end if self.billed_until is None else min(end, self.billed_until)
        return max(0.0, until - max(start, self.billed_from))


@dataclass
class CostTotals:
    replicas: int = 0
    replica_seconds: float = 0.0
    cost: float = 0.0  # USD
    ondemand_cost: float = 0.0  # USD, the same seconds at on-demand prices

    def add(self, span: BilledSpan, start: float, end: float) -> None:
        secs = span.seconds(start, end)
        self.replicas += 1
        self.replica_seconds += secs
        self.cost += secs * span.price / 3600.0
        od = span.ondemand_price if span.ondemand_price is not None else span.price
        self.ondemand_cost += secs * max(od, span.price) / 3600.0

    @property
    def savings(self) -> float:
        return self.ondemand_cost - self.cost

    def as_dict(self) -> dict[str, Any]:
        return {
            "replicas": self.replicas,
            "replica_seconds": round(self.replica_seconds, 3),
            "accrued_cost": round(self.cost, 6),
            "ondemand_cost": round(self.ondemand_cost, 6),
            "savings": round(self.savings, 6),
            "savings_pct": round(100.0 * self.savings / self.ondemand_cost, 2)
            if self.ondemand_cost > 0
            else 0.0,
        }


def accrued(span: BilledSpan, now: float) -> CostTotals:
    """One replica's cost from its launch until now (or its end)."""
    out = CostTotals()
    out.add(span, float("-inf"), now)
    return out


def total(spans: Iterable[BilledSpan], start: float, end: float) -> CostTotals:
    """Totals over the spans that billed inside [start, end]."""
    out = CostTotals()
    for s in spans:
        if s.seconds(start, end) > 0:
            out.add(s, start, end)
    return out


GROUPS: dict[str, Callable[[BilledSpan], str]] = {
    "service": lambda s: s.service,
    "cloud": lambda s: s.location.cloud,
    "location": lambda s: str(s.location),
    "kind": lambda s: "spot" if s.spot else "on-demand",
}


def grouped(
    spans: Iterable[BilledSpan], start: float, end: float, by: str
) -> dict[str, CostTotals]:
    """Totals per ``by`` (a key of :data:`GROUPS`) over spans billing inside [start, end]."""
    key = GROUPS[by]
    out: dict[str, CostTotals] = {}
    for s in spans:
        if s.seconds(start, end) > 0:
            out.setdefault(key(s), CostTotals()).add(s, start, end)
    return dict(sorted(out.items()))


def report(spans: Iterable[BilledSpan], start: float, end: float) -> dict[str, Any]:
    """The cost report over [start, end]: the total and the totals per group."""
    spans = list(spans)
    return {
        "since": start,
        "until": end,
        "total": total(spans, start, end).as_dict(),
        **{
            f"by_{name}": {k: v.as_dict() for k, v in grouped(spans, start, end, name).items()}
            for name in GROUPS
        },
    }


# -- the store's side ---------------------------------------------------------


def spans(conn: Connection, name: str | None) -> list[BilledSpan]:
    """Every replica's span: the replicas table, then the ledger (purged ones)."""
    r, led = t.replicas, t.replica_ledger
    q1 = select(r)
    q2 = select(led)
    if name is not None:
        q1 = q1.where(r.c.service == name)
        q2 = q2.where(led.c.service == name)
    out = [
        BilledSpan(
            service=row.service,
            replica_id=row.replica_id,
            location=Location(row.cloud, row.region, row.zone),
            spot=bool(row.spot),
            instance_type=row.instance_type,
            price=row.price,
            ondemand_price=row.ondemand_price,
            billed_from=row.billed_from,
            billed_until=row.terminated_at,
            end_reason=row.end_reason,
            had_notice=row.interruption_at is not None,
            launch_attempts=row.launch_attempts,
            purged=False,
        )
        for row in conn.execute(q1)
    ]
    out.extend(
        BilledSpan(
            service=row.service,
            replica_id=row.replica_id,
            location=Location(row.cloud, row.region, row.zone),
            spot=bool(row.spot),
            instance_type=row.instance_type,
            price=row.price,
            ondemand_price=row.ondemand_price,
            billed_from=row.billed_from,
            billed_until=row.terminated_at,
            end_reason=row.end_reason,
            had_notice=bool(row.had_notice),
            launch_attempts=row.launch_attempts,
            purged=True,
        )
        for row in conn.execute(q2)
    )
    return out


def keep_in_ledger(conn: Connection, where: ColumnElement[bool]) -> None:
    """Copy the ended replicas matching ``where`` into the ledger (before deleting them)."""
    r, led = t.replicas, t.replica_ledger
    cols = [
        r.c.service,
        r.c.replica_id,
        r.c.cloud,
        r.c.region,
        r.c.zone,
        r.c.spot,
        r.c.instance_type,
        r.c.price,
        r.c.ondemand_price,
        r.c.end_reason,
        r.c.created_at,
        r.c.billed_from,
        r.c.terminated_at,
        r.c.interruption_at.is_not(None).label("had_notice"),
        r.c.launch_attempts,
    ]
    names = [c.name for c in cols]
    conn.execute(
        insert(led)
        .from_select(names, select(*cols).where(where, r.c.terminated_at.is_not(None)))
        .prefix_with("OR IGNORE")
    )
