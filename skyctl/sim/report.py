"""The simulator's figures: accumulation while replaying, the result, and its renderings.

Definitions (also in ``docs/simulator.md``):

- availability: share of the measured time with at least N READY replicas
  (and with at least one); the measured time starts after the first cold
  start, which every policy needs;
- cost: every replica's price from launch to termination, in dollars;
- on-demand-only cost: N replicas at the cheapest on-demand price for the
  whole window;
- lower bound: for every tick, N replicas at the cheapest price available in
  that tick (spot where some zone is available, on-demand otherwise).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from skyctl.traces import Trace


@dataclass(frozen=True)
class TimelinePoint:
    t: float  # start of the interval (seconds since the window start)
    ready_spot: int
    ready_ondemand: int
    target: int
    cost: float  # cumulative dollars at the end of the interval


@dataclass(frozen=True)
class SimResult:
    policy: str
    trace: str
    replicas: int  # N
    hours: float
    availability: float  # share of measured time with >= N ready
    availability_any: float  # share of measured time with >= 1 ready
    cost: float
    ondemand_cost: float  # N on-demand replicas for the whole window
    lower_bound: float
    preemptions: int
    launches: int
    failed_launches: int
    ondemand_hours: float  # on-demand replica-hours
    spot_hours: float  # spot replica-hours
    plans: int  # calls of policies.reconcile.plan
    failure: str = ""  # when and why plan gave the service up (FAILED), if it did
    measured_hours: float = 0.0  # the time availability is measured over (after the cold start)
    timeline: tuple[TimelinePoint, ...] = field(default=(), repr=False)

    @property
    def cost_share(self) -> float:
        return self.cost / self.ondemand_cost if self.ondemand_cost else 0.0

    @property
    def cost_over_bound(self) -> float:
        return self.cost / self.lower_bound if self.lower_bound else 0.0

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d.pop("timeline")
        d["cost_share"] = self.cost_share
        d["cost_over_bound"] = self.cost_over_bound
        return d


class Recorder:
    """Accumulates figures over piecewise-constant intervals between events."""

    def __init__(self, n: int, *, timeline: bool = False) -> None:
        self.n = n
        self.keep_timeline = timeline
        self.timeline: list[TimelinePoint] = []
        self.start = 0.0
        self.last = 0.0
        self.measure_from = 0.0
        self.measured = 0.0
        self.up_n = 0.0
        self.up_1 = 0.0
        self.cost = 0.0
        self.od_hours = 0.0
        self.spot_hours = 0.0
        self.preemptions = 0
        self.launches = 0
        self.failed_launches = 0
        self.plans = 0
        self.target = 0

    def begin(self, start: float, *, measure_from: float) -> None:
        self.start = self.last = start
        self.measure_from = measure_from

    def advance(
        self,
        now: float,
        ready_spot: int,
        ready_od: int,
        rate: float,
        spot_live: int,
        live: int,
    ) -> None:
        """Account the interval [last, now) with the state held during it."""
        dt = now - self.last
        if dt <= 0:
            return
        self.cost += rate * dt / 3600.0
        self.spot_hours += spot_live * dt / 3600.0
        self.od_hours += (live - spot_live) * dt / 3600.0
        measured = now - max(self.last, self.measure_from)
        if measured > 0:
            ready = ready_spot + ready_od
            self.measured += measured
            if ready >= self.n:
                self.up_n += measured
            if ready >= 1:
                self.up_1 += measured
        if self.keep_timeline:
            self.timeline.append(
                TimelinePoint(self.last - self.start, ready_spot, ready_od, self.target, self.cost)
            )
        self.last = now

    def result(self, *, policy: str, trace: Trace, od_price: float) -> SimResult:
        hours = trace.ticks * trace.gap_seconds / 3600.0
        return SimResult(
            policy=policy,
            trace=trace.name,
            replicas=self.n,
            hours=hours,
            # min(): a sum of some of the intervals never reads above the sum of them all
            availability=min(1.0, self.up_n / self.measured) if self.measured else 0.0,
            availability_any=min(1.0, self.up_1 / self.measured) if self.measured else 0.0,
            cost=self.cost,
            ondemand_cost=self.n * od_price * hours,
            lower_bound=lower_bound(trace, self.n, od_price),
            preemptions=self.preemptions,
            launches=self.launches,
            failed_launches=self.failed_launches,
            ondemand_hours=self.od_hours,
            spot_hours=self.spot_hours,
            plans=self.plans,
            measured_hours=self.measured / 3600.0,
            timeline=tuple(self.timeline),
        )


def lower_bound(trace: Trace, n: int, od_price: float) -> float:
    """N replicas at each tick's cheapest available price (on-demand when none)."""
    avail = trace.availability_matrix()
    prices = trace.spot_price_matrix()
    zones = range(len(avail))
    total = 0.0
    for t in range(trace.ticks):
        best = od_price
        for i in zones:
            if avail[i][t] and prices[i][t] < best:
                best = prices[i][t]
        total += best
    return n * total * trace.gap_seconds / 3600.0


COLUMNS = (
    ("policy", "{}"),
    ("avail N", "{:.3%}"),
    ("avail 1", "{:.3%}"),
    ("cost $", "{:,.0f}"),
    ("vs OD", "{:.1%}"),
    ("/bound", "{:.2f}x"),
    ("preempt", "{}"),
    ("launch", "{}"),
    ("failed", "{}"),
    ("OD rep-h", "{:,.0f}"),
)


def _row(r: SimResult) -> list[str]:
    values = (
        r.policy,
        r.availability,
        r.availability_any,
        r.cost,
        r.cost_share,
        r.cost_over_bound,
        r.preemptions,
        r.launches,
        r.failed_launches,
        r.ondemand_hours,
    )
    row = [fmt.format(v) for (_, fmt), v in zip(COLUMNS, values, strict=True)]
    if not r.lower_bound:  # free spot all along: no ratio to show
        row[5] = "n/a"
    return row


def format_table(results: Sequence[SimResult], *, markdown: bool = False) -> str:
    """An aligned text table (or a Markdown one), one row per result."""
    if not results:
        return ""
    head = [name for name, _ in COLUMNS]
    rows = [_row(r) for r in results]
    first = results[0]
    title = (
        f"trace {first.trace}: {first.hours:.1f} h, N = {first.replicas}, "
        f"on-demand-only ${first.ondemand_cost:,.0f}, lower bound ${first.lower_bound:,.0f} "
        f"({first.lower_bound / first.ondemand_cost:.1%} of on-demand)"
        if first.ondemand_cost
        else f"trace {first.trace}"
    )
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return title + "\n\n" + "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([title, fmt.format(*head), *(fmt.format(*r) for r in rows)])


def to_json(results: Sequence[SimResult]) -> str:
    return json.dumps([r.to_dict() for r in results], indent=2)
