"""The cost ledger: ended replicas' cost facts, kept after their rows go, bounded.

An ended replica's row is copied into ``replica_ledger`` when it is purged (an
hour after it ended) or its service deleted (:func:`keep_in_ledger`), so cost
totals and counters never shrink. That was one row per replica for good: ~140 MB
on disk and ~370 MB of controller memory a year at 100 replicas preempted hourly.

Now the rows of replicas that ended more than a retention window ago are folded
(:func:`plan_fold` then :func:`apply_fold`, a bounded batch per call, run off the
controller's event loop by ``skyctl.controller.retention``) into
``replica_ledger_days``: one row per service, place, kind, instance type, end
reason and UTC day, holding the billed seconds, cost and on-demand cost that
fell inside that day (a replica billing across midnight is split between the
days), the replica counts the report and the metrics need, and the first and
last billed moments of the day.

Exact after folding (to float rounding): every all-time total (``serve status``'s
accrued cost, ``serve cost`` without ``--since``, the ``skyctl_*`` counters), a
window whose bounds are UTC midnights or lie after the folded days, and the cost
curve from each folded day's end on. Inside a folded day, the curve and a window
bound spread the day's figures evenly between its first and last billed moments.

The store reads the ledger through :class:`Ledger`: SQL sums cached until the
ledger changes (its highest rowid and the number of rows ever folded), never a
Python object per row; ``serve cost`` streams the rows (:func:`report_rows`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, insert, literal_column, select, text

from skyctl.errors import StoreError
from skyctl.store import costs
from skyctl.store import schema as t
from skyctl.types import Location

DAY = costs.DAY
#: ``service_since`` of replicas that were not the current service's when folded
EARLIER = float("-inf")

_STAMP = "SELECT (SELECT max(rowid) FROM replica_ledger), (SELECT folded FROM ledger_folds)"

_RAW_SUMS = """
SELECT count(*), total(s), total(s * price / 3600.0),
       total(s * max(coalesce(ondemand_price, price), price) / 3600.0), max(terminated_at)
FROM (SELECT max(0.0, min(:now, terminated_at) - billed_from) AS s, price, ondemand_price,
             terminated_at
      FROM replica_ledger
      WHERE billed_from IS NOT NULL AND billed_from >= :since {name})
"""

_DAY_SUMS = """
SELECT total(billed), total(replica_seconds * f), total(cost * f), total(ondemand_cost * f),
       max(last_at)
FROM (SELECT billed, replica_seconds, cost, ondemand_cost, last_at,
             CASE WHEN last_at IS NULL OR last_at <= first_at THEN 0.0
                  ELSE max(0.0, min(1.0, (:now - first_at) / (last_at - first_at))) END AS f
      FROM replica_ledger_days WHERE service_since >= :since {name})
"""

_RAW_SEGMENTS = """
SELECT billed_from, terminated_at, terminated_at - billed_from,
       (terminated_at - billed_from) * price / 3600.0,
       (terminated_at - billed_from) * max(coalesce(ondemand_price, price), price) / 3600.0
FROM replica_ledger
WHERE billed_from IS NOT NULL AND billed_from >= :since AND terminated_at > billed_from {name}
"""

_DAY_SEGMENTS = """
SELECT min(first_at), max(last_at), total(replica_seconds), total(cost), total(ondemand_cost)
FROM replica_ledger_days
WHERE service_since >= :since AND first_at IS NOT NULL {name}
GROUP BY day
"""

_RAW_FACTS = """
SELECT service, cloud, region, zone, spot, coalesce(end_reason, ''), count(*),
       total(launch_attempts), total(had_notice),
       total(coalesce(max(0.0, terminated_at - billed_from), 0.0) * price / 3600.0)
FROM replica_ledger GROUP BY 1, 2, 3, 4, 5, 6
"""

_DAY_FACTS = """
SELECT service, cloud, region, zone, spot, end_reason, total(replicas), total(launches),
       total(notices), total(cost)
FROM replica_ledger_days GROUP BY 1, 2, 3, 4, 5, 6
"""

_KEY = "service, service_since, cloud, region, zone, spot, instance_type, end_reason, day"
_SUMMED = "replicas billed began active replica_seconds cost ondemand_cost launches notices"
_UPSERT = (
    f"INSERT INTO replica_ledger_days ({_KEY}, {', '.join(_SUMMED.split())}, first_at, last_at) "
    f"VALUES ({', '.join(':' + c for c in (*_KEY.split(', '), *_SUMMED.split()))}, "
    f":first_at, :last_at) ON CONFLICT ({_KEY}) DO UPDATE SET "
    + ", ".join(f"{c} = {c} + excluded.{c}" for c in _SUMMED.split())
    + ", first_at = CASE WHEN first_at IS NULL OR excluded.first_at < first_at"
    " THEN excluded.first_at ELSE first_at END"
    ", last_at = CASE WHEN last_at IS NULL OR excluded.last_at > last_at"
    " THEN excluded.last_at ELSE last_at END"
)


def _name(name: str | None) -> tuple[str, dict[str, Any]]:
    return ("", {}) if name is None else ("AND service = :name", {"name": name})


class Ledger:
    """The ledger's sums, cached until the ledger changes (rows appended or folded):
    a console redrawing every second reads one stamp, not months of history. Holds
    sums and, per service asked for, the cost curve: a few arrays over the rows kept
    within the retention window and one segment per folded day, never a row object."""

    def __init__(self) -> None:
        self._stamp: tuple[Any, ...] | None = None
        # (name, since) -> (sums to the end of time, the latest end among them)
        self._totals: dict[tuple[str | None, float], tuple[costs.CostTotals, float]] = {}
        self._curves: dict[tuple[str | None, float], costs.Curve] = {}
        self._facts: dict[tuple[str, str, str], costs.Facts] | None = None

    def _check(self, conn: Connection) -> None:
        stamp = tuple(conn.exec_driver_sql(_STAMP).one())
        if stamp != self._stamp:
            self._stamp = stamp
            self._totals.clear()
            self._curves.clear()
            self._facts = None

    def totals(
        self, conn: Connection, name: str | None, since: float, now: float
    ) -> costs.CostTotals:
        """What the purged replicas that started billing at ``since`` (a service's
        creation time) or later had cost at ``now`` (a service's own; all when ``name``
        is None). From the cache when ``now`` is past their ends (always, from
        `serve status`: they were purged an hour after)."""
        self._check(conn)
        cached = self._totals.get((name, since))
        if cached is None:
            cached = self._totals[(name, since)] = _sums(conn, name, since, math.inf)
        full, last_end = cached
        if now >= last_end:
            return costs.CostTotals(
                full.replicas, full.replica_seconds, full.cost, full.ondemand_cost
            )
        return _sums(conn, name, since, now)[0]

    def curve(self, conn: Connection, name: str | None, since: float) -> costs.Curve:
        """The cost curve of the purged replicas that started billing at ``since`` (a
        service's creation time) or later; cached until the ledger changes."""
        self._check(conn)
        curve = self._curves.get((name, since))
        if curve is None:
            where, args = _name(name)
            args = {**args, "since": since}
            segments: list[costs.Segment] = []
            for query in (_RAW_SEGMENTS, _DAY_SEGMENTS):
                for a, b, secs, cost, od in conn.execute(text(query.format(name=where)), args):
                    segments.append((a, b, secs, cost, od))
            curve = costs.Curve(segments=segments)
            self._curves[(name, since)] = curve
        return curve

    def facts(self, conn: Connection) -> dict[tuple[str, str, str], costs.Facts]:
        """Counters per (service, location, kind) over the purged replicas (cached)."""
        self._check(conn)
        if self._facts is None:
            out: dict[tuple[str, str, str], costs.Facts] = {}
            for query in (_RAW_FACTS, _DAY_FACTS):
                for (
                    service,
                    cloud,
                    region,
                    zone,
                    spot,
                    reason,
                    n,
                    launches,
                    notices,
                    cost,
                ) in conn.exec_driver_sql(query):
                    key = (service, str(Location(cloud, region, zone)), _kind(spot))
                    f = out.setdefault(key, costs.Facts())
                    f.launches += int(launches)
                    if reason.startswith("FAILED"):
                        f.failures[reason] += int(n)
                    f.preemptions += int(n) if reason == "PREEMPTED" else 0
                    f.notices += int(notices)
                    f.cost += cost
            self._facts = out
        return self._facts


def _kind(spot: Any) -> str:
    return "spot" if spot else "on-demand"


def _sums(
    conn: Connection, name: str | None, since: float, now: float
) -> tuple[costs.CostTotals, float]:
    where, args = _name(name)
    args = {**args, "since": since, "now": now}
    n, secs, cost, od, end = conn.execute(text(_RAW_SUMS.format(name=where)), args).one()
    dn, dsecs, dcost, dod, dend = conn.execute(text(_DAY_SUMS.format(name=where)), args).one()
    last = max((e for e in (end, dend) if e is not None), default=-math.inf)
    return costs.CostTotals(n + int(dn), secs + dsecs, cost + dcost, od + dod), last


# -- rows, for `serve cost` and tests -------------------------------------------------


def _span(row: Any, purged: bool) -> costs.BilledSpan:
    return costs.BilledSpan(
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
        had_notice=bool(row.had_notice) if purged else row.interruption_at is not None,
        launch_attempts=row.launch_attempts,
        purged=purged,
    )


def spans(conn: Connection, name: str | None, purged: bool) -> Iterator[costs.BilledSpan]:
    """Every replica's span: the replicas table, then (``purged``) the ledger's rows
    not yet folded, one at a time."""
    for table, kept in ((t.replicas, False), (t.replica_ledger, True)):
        if kept and not purged:
            break
        q = select(table)
        if name is not None:
            q = q.where(table.c.service == name)
        for row in conn.execute(q):
            yield _span(row, kept)


_DAYS = """
SELECT service, cloud, region, zone, spot, day, total(billed), total(began), total(active),
       total(replica_seconds), total(cost), total(ondemand_cost), min(first_at), max(last_at)
FROM replica_ledger_days {name}
GROUP BY service, cloud, region, zone, spot, day
"""


def days(conn: Connection, name: str | None) -> Iterator[costs.DayTotals]:
    """The folded days, per service, place and kind, one at a time."""
    where, args = ("", {}) if name is None else ("WHERE service = :name", {"name": name})
    for row in conn.execute(text(_DAYS.format(name=where)), args):
        service, cloud, region, zone, spot, day, billed, began, active, secs, cost, od, a, b = row
        yield costs.DayTotals(
            service=service,
            location=Location(cloud, region, zone),
            spot=bool(spot),
            day=day,
            billed=int(billed),
            began=int(began),
            active=int(active),
            replica_seconds=secs,
            cost=cost,
            ondemand_cost=od,
            first_at=a,
            last_at=b,
        )


def report(conn: Connection, name: str | None, start: float, end: float) -> costs.Report:
    """`serve cost`'s report, streamed: live and ended replicas, the ledger's rows, its
    folded days."""
    rep = costs.Report(start, end)
    for s in spans(conn, name, purged=True):
        rep.add(s)
    for d in days(conn, name):
        rep.add_day(d)
    return rep


# -- writing ------------------------------------------------------------------------


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


def foldable(conn: Connection, before: float) -> bool:
    """Whether some ledger row's replica ended before ``before`` (an indexed lookup)."""
    led = t.replica_ledger
    q = select(led.c.terminated_at).where(led.c.terminated_at < before).limit(1)
    return conn.execute(q).first() is not None


@dataclass(frozen=True)
class Fold:
    """A batch of ledger rows summed into days (:func:`plan_fold`), to write."""

    rowids: list[int]
    days: list[dict[str, Any]]  # the upserts, one per day and key


def plan_fold(conn: Connection, before: float, limit: int) -> Fold | None:
    """Sum at most ``limit`` ledger rows of replicas that ended before ``before``,
    oldest first, into per-day totals (a read: no lock held while summing). The
    service a row belonged to is its current one when it started billing at or after
    that service's creation (``service_since``), else an earlier one."""
    led = t.replica_ledger
    rows = conn.execute(
        select(literal_column("rowid"), led)
        .where(led.c.terminated_at < before)
        .order_by(led.c.terminated_at, literal_column("rowid"))
        .limit(limit)
    ).all()
    if not rows:
        return None
    created = dict(conn.execute(select(t.services.c.name, t.services.c.created_at)).all())
    acc: dict[tuple[Any, ...], list[Any]] = {}
    for row in rows:
        _fold_row(acc, row, created.get(row.service))
    keys = _KEY.split(", ")
    days = [
        {
            **dict(zip(keys, key, strict=True)),
            **dict(zip(_SUMMED.split(), v[:9], strict=True)),
            "first_at": v[9],
            "last_at": v[10],
        }
        for key, v in acc.items()
    ]
    return Fold([r[0] for r in rows], days)


def apply_fold(conn: Connection, fold: Fold) -> None:
    """Write a planned fold inside the caller's write transaction: add its days, delete
    its rows. Rows are never changed in place, so the sums still hold unless another
    fold took some of them meanwhile: then this raises and the caller rolls back."""
    deleted = conn.execute(
        text("DELETE FROM replica_ledger WHERE rowid = :id"), [{"id": i} for i in fold.rowids]
    ).rowcount
    if deleted != len(fold.rowids):
        raise StoreError(
            f"the cost ledger changed while folding ({deleted} of {len(fold.rowids)} rows "
            "left): nothing folded, retried later"
        )
    conn.execute(text(_UPSERT), fold.days)
    conn.execute(text("UPDATE ledger_folds SET folded = folded + :n"), {"n": deleted})


def day_of(when: float) -> float:
    return math.floor(when / DAY) * DAY


def _fold_row(acc: dict[tuple[Any, ...], list[Any]], row: Any, created: float | None) -> None:
    b, end = row.billed_from, row.terminated_at
    since = created if created is not None and b is not None and b >= created else EARLIER
    place = (row.cloud, row.region, row.zone, bool(row.spot), row.instance_type)
    base = (row.service, since, *place, row.end_reason or "")

    def bucket(day: float) -> list[Any]:
        # replicas billed began active seconds cost ondemand launches notices first last
        return acc.setdefault((*base, day), [0, 0, 0, 0, 0.0, 0.0, 0.0, 0, 0, None, None])

    home = bucket(day_of(b if b is not None else end))
    home[0] += 1
    home[7] += row.launch_attempts
    home[8] += int(bool(row.had_notice))
    if b is None:
        return
    home[1] += 1
    if end <= b:
        return
    home[2] += 1
    od = max(row.ondemand_price if row.ondemand_price is not None else row.price, row.price)
    day = day_of(b)
    while day < end:
        lo, hi = max(b, day), min(end, day + DAY)
        if hi > lo:
            v = bucket(day)
            v[3] += 1
            v[4] += hi - lo
            v[5] += (hi - lo) * row.price / 3600.0
            v[6] += (hi - lo) * od / 3600.0
            v[9] = lo if v[9] is None else min(v[9], lo)
            v[10] = hi if v[10] is None else max(v[10], hi)
        day += DAY
