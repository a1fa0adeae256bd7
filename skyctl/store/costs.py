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

Ended replicas are copied into the ledger before their rows are purged or
their service deleted, so totals and counters never shrink; its old rows are
folded into per-day totals (:class:`DayTotals`; :mod:`skyctl.store.ledger`
reads and writes it). Everything here is pure.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

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


#: (start, end, billed seconds, cost USD, on-demand USD) accrued evenly over [start, end]
Segment = tuple[float, float, float, float, float]


class Curve:
    """Accrued (billed seconds, cost, on-demand equivalent) as a function of time for
    a fixed set of spans and segments: prefix sums over the sorted rate changes, so
    each point is a binary search. At time t the total is t x (sum of rates) - (sum
    of rate x change time) over the changes up to t. A span bills at its price; a
    segment (a folded day, :class:`DayTotals`) accrues evenly from its start to its
    end, so it is exact from its end on. Kept in flat arrays: 56 bytes a change."""

    def __init__(self, spans: Iterable[BilledSpan] = (), segments: Iterable[Segment] = ()) -> None:
        edges: list[tuple[float, float, float, float]] = []  # (when, d count, d USD/s, d od)
        for s in spans:
            if s.billed_from is None:
                continue
            rate = s.price / 3600.0
            od = max(s.ondemand_price if s.ondemand_price is not None else s.price, s.price)
            edges.append((s.billed_from, 1.0, rate, od / 3600.0))
            if s.billed_until is not None:
                edges.append((s.billed_until, -1.0, -rate, -od / 3600.0))
        for start, end, seconds, cost, ondemand in segments:
            if end > start:
                width = end - start
                n, r, o = seconds / width, cost / width, ondemand / width
                edges += [(start, n, r, o), (end, -n, -r, -o)]
        edges.sort(key=lambda e: e[0])
        self.whens = array("d", (e[0] for e in edges))
        # running (n, n*when, rate, rate*when, od, od*when), six per change
        self.sums = array("d")
        acc = [0.0] * 6
        for when, n, rate, od in edges:
            for i, v in enumerate((n, n * when, rate, rate * when, od, od * when)):
                acc[i] += v
            self.sums.extend(acc)

    def at(self, t: float) -> tuple[float, float, float]:
        k = bisect_right(self.whens, t)
        if k == 0:
            return (0.0, 0.0, 0.0)
        n, nw, r, rw, o, ow = self.sums[6 * (k - 1) : 6 * k]
        return (t * n - nw, t * r - rw, t * o - ow)


def cumulative(spans: Iterable[BilledSpan], times: list[float]) -> list[tuple[float, float]]:
    """(cost, on-demand equivalent) accrued up to each of ``times``, in USD."""
    curve = Curve(spans)
    return [curve.at(t)[1:] for t in times]


class Placed(Protocol):
    """What the cost report groups by: a span's, or a folded day's."""

    @property
    def service(self) -> str: ...
    @property
    def location(self) -> Location: ...
    @property
    def spot(self) -> bool: ...


GROUPS: dict[str, Callable[[Placed], str]] = {
    "service": lambda s: s.service,
    "cloud": lambda s: s.location.cloud,
    "location": lambda s: str(s.location),
    "kind": lambda s: "spot" if s.spot else "on-demand",
}

DAY = 86400.0


@dataclass(frozen=True)
class DayTotals:
    """The ledger's rows of one service, place, kind and UTC day, folded (see
    :mod:`skyctl.store.ledger`): their billed time inside that day and counts."""

    service: str
    location: Location
    spot: bool
    day: float  # its UTC midnight
    billed: int  # replicas that began billing this day
    began: int  # of those, billed for some time
    active: int  # replicas billed for some time inside this day
    replica_seconds: float
    cost: float  # USD
    ondemand_cost: float  # USD
    first_at: float | None  # the first and last billed moments inside this day
    last_at: float | None

    def share(self, start: float, end: float) -> float:
        """The share of this day's billed time inside [start, end], spread evenly between
        its first and last billed moments (exact for a window that holds them both)."""
        if self.first_at is None or self.last_at is None or self.last_at <= self.first_at:
            return 0.0
        inside = min(end, self.last_at) - max(start, self.first_at)
        return max(0.0, inside) / (self.last_at - self.first_at)


def add_day(out: CostTotals, d: DayTotals, share: float, start: float) -> None:
    """Add a folded day's ``share`` to ``out``. Replicas count once per window: those
    billing in the day the window starts in, and those that began in a later day."""
    out.replicas += d.active if d.day <= start < d.day + DAY else d.began
    out.replica_seconds += share * d.replica_seconds
    out.cost += share * d.cost
    out.ondemand_cost += share * d.ondemand_cost


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


class Report:
    """The cost report over [start, end], summed one span or folded day at a time (so
    months of ledger are never all in memory). ``start`` -inf: from the first bill."""

    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, end
        self.total = CostTotals()
        self.groups: dict[str, dict[str, CostTotals]] = {name: {} for name in GROUPS}
        self.first = float("inf")  # the earliest bill seen
        self.seen = 0  # spans and folded days seen, billed or not

    def add(self, s: BilledSpan) -> None:
        self.seen += 1
        if s.billed_from is not None:
            self.first = min(self.first, s.billed_from)
        if s.seconds(self.start, self.end) > 0:
            self.total.add(s, self.start, self.end)
            for name, key in GROUPS.items():
                self.groups[name].setdefault(key(s), CostTotals()).add(s, self.start, self.end)

    def add_day(self, d: DayTotals) -> None:
        self.seen += 1
        if d.first_at is not None:
            self.first = min(self.first, d.first_at)
        share = d.share(self.start, self.end)
        if share > 0:
            add_day(self.total, d, share, self.start)
            for name, key in GROUPS.items():
                add_day(self.groups[name].setdefault(key(d), CostTotals()), d, share, self.start)

    def as_dict(self) -> dict[str, Any]:
        since = self.start
        if since == float("-inf"):
            since = self.first if self.first != float("inf") else self.end
        return {
            "since": since,
            "until": self.end,
            "total": self.total.as_dict(),
            **{
                f"by_{name}": {k: v.as_dict() for k, v in sorted(self.groups[name].items())}
                for name in GROUPS
            },
        }


def report(spans: Iterable[BilledSpan], start: float, end: float) -> dict[str, Any]:
    """The cost report over [start, end]: the total and the totals per group."""
    rep = Report(start, end)
    for s in spans:
        rep.add(s)
    return rep.as_dict()


def fact_key(s: BilledSpan) -> tuple[str, str, str]:
    return (s.service, str(s.location), "spot" if s.spot else "on-demand")


@dataclass
class Facts:
    """What metrics count for one (service, location, kind)."""

    launches: int = 0  # launch calls, retries with the same token included
    failures: Counter[str] = field(default_factory=Counter)  # by end reason
    preemptions: int = 0
    notices: int = 0
    cost: float = 0.0  # USD

    def add(self, s: BilledSpan, now: float) -> None:
        self.launches += s.launch_attempts
        if s.end_reason is not None and s.end_reason.startswith("FAILED"):
            self.failures[s.end_reason] += 1
        self.preemptions += s.end_reason == "PREEMPTED"
        self.notices += s.had_notice
        self.cost += s.seconds(float("-inf"), now) * s.price / 3600.0

    def plus(self, other: Facts) -> Facts:
        return Facts(
            self.launches + other.launches,
            self.failures + other.failures,
            self.preemptions + other.preemptions,
            self.notices + other.notices,
            self.cost + other.cost,
        )
