"""Bounded request accounting for the router.

- :class:`RateWindow`: requests per second over a window, from per-second
  buckets keyed by the injected clock (at most ``horizon`` buckets kept).
- :class:`Reservoir`: the most recent ``size`` latencies (a ring), for
  percentiles.
- :class:`ReplicaState`: one replica's live counters. ``in_flight`` only
  moves through :class:`Attempt`, whose release is idempotent, so it can
  never go negative or leak whatever errors or cancellations happen.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from typing import Final

from policies.outlier import CONSECUTIVE_FAILURES
from policies.routing import percentile
from skyctl.router.client import Origin
from skyctl.types import Backend


class RateWindow:
    """Event counts in per-second buckets; memory bounded by ``horizon`` seconds."""

    __slots__ = ("_buckets", "_horizon")

    def __init__(self, horizon: int = 3600) -> None:
        self._horizon = horizon
        self._buckets: deque[list[int]] = deque(maxlen=horizon)

    def record(self, now: float, count: int = 1) -> None:
        second = int(now)
        buckets = self._buckets
        if buckets and buckets[-1][0] == second:
            buckets[-1][1] += count
        elif buckets and buckets[-1][0] > second:  # clock went back: count in the newest bucket
            buckets[-1][1] += count
        else:
            buckets.append([second, count])

    def rate(self, now: float, window: float) -> float:
        """Events per second over the ``window`` seconds ending at ``now``."""
        if window <= 0:
            raise ValueError(f"window_seconds must be > 0, got {window}")
        window = min(window, float(self._horizon))
        start = now - window
        total = 0
        for second, count in reversed(self._buckets):
            if second + 1 <= start:
                break
            if second <= now:
                total += count
        return total / window

    def __len__(self) -> int:
        return len(self._buckets)


class Reservoir:
    """The last ``size`` samples; percentiles are computed on demand."""

    __slots__ = ("_samples", "_size", "total")

    def __init__(self, size: int = 1024) -> None:
        # a ring in a list made whole at once (one item store per sample, no
        # branch; a deque's append is a method call when compiled): the order of
        # samples is not kept, no figure needs it
        self._samples: list[float] = [0.0] * size
        self._size = size
        self.total = 0  # samples ever added

    def add(self, value: float) -> None:
        total = self.total
        self._samples[total % self._size] = value
        self.total = total + 1

    def percentile(self, q: float) -> float:
        return percentile(self.values(), q)

    def values(self) -> list[float]:
        return self._samples[: self.total] if self.total < self._size else list(self._samples)

    def __len__(self) -> int:
        return min(self.total, self._size)


# seconds: from a millisecond answer to a ten-minute generation
BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip
FOLD_AT: Final = 4096  # samples a Histogram keeps uncounted at most


class Histogram:
    """Counts of durations in :data:`BUCKETS` per (replica id, status class), for
    Prometheus histograms: counters only (cumulative at export), so they sum
    across workers and routers. Replica id -1: answered by the router itself.

    The request path only appends ``(replica, status, seconds)`` to
    :attr:`pending` (one list append, no call; see ``Exchange._finish``); the
    samples are counted into :attr:`series` in one loop when it is read, when
    replicas are forgotten, or once :data:`FOLD_AT` are waiting (bounded memory).
    """

    __slots__ = ("_series", "pending")

    def __init__(self) -> None:
        # (replica, status // 100) -> [count per bucket ..., +Inf count, sum]
        self._series: dict[tuple[int, int], list[float]] = {}
        self.pending: list[tuple[int, int, float]] = []

    def observe(self, replica: int, status: int, seconds: float) -> None:
        pending = self.pending
        pending.append((replica, status, seconds))
        if len(pending) >= FOLD_AT:
            self.fold()

    def fold(self) -> None:
        """Count the pending samples into the series."""
        pending, self.pending = self.pending, []
        series = self._series
        size = len(BUCKETS) + 2
        first = BUCKETS[0]
        last: tuple[int, int] | None = None  # the previous sample's (replica, status)
        counts: list[float] = []
        for replica, status, seconds in pending:
            if last is None or replica != last[0] or status != last[1]:
                last = (replica, status)  # (most samples share the previous one's series)
                key = (replica, status // 100)
                found = series.get(key)
                if found is None:
                    found = series[key] = [0.0] * size
                counts = found
            # the first bucket without a call (where a proxy's fast answers fall)
            counts[0 if seconds <= first else bisect_left(BUCKETS, seconds)] += 1.0
            counts[-1] += seconds

    @property
    def series(self) -> dict[tuple[int, int], list[float]]:
        """(replica, status class) -> [count per bucket ..., +Inf count, sum of seconds]."""
        if self.pending:
            self.fold()
        return self._series

    def forget(self, replicas: set[int]) -> None:
        """Drop the series of replicas gone for good (bounded memory)."""
        series = self.series
        for key in [k for k in series if k[0] >= 0 and k[0] not in replicas]:
            del series[key]


class ReplicaState:
    """Live counters of one replica (kept while it is routable or busy)."""

    __slots__ = (
        "backend",
        "cancelled",
        "consecutive",
        "ejected_until",
        "ejections",
        "errors",
        "in_flight",
        "latency",
        "on_outlier",
        "origin",
        "replica_id",
        "requests",
        "target_qps",
        "url",
        "wins",
    )

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.replica_id = backend.replica_id
        self.url = backend.url.rstrip("/")
        self.origin = Origin.parse(self.url)  # ValueError for a URL that is not http(s)
        self.target_qps = 1.0  # for instance_aware_least_load
        self.in_flight = 0
        self.requests = 0
        self.wins = 0
        self.cancelled = 0
        self.errors = 0
        self.latency = Reservoir()  # seconds to response headers
        # passive health (skyctl.router.health): failures in a row, and ejections
        self.consecutive = 0
        self.ejected_until = 0.0
        self.ejections = 0
        self.on_outlier: Callable[[ReplicaState, str], None] | None = None

    def failed(self, reason: str) -> None:
        """A request failed on this replica by its fault (timeout, reset, 5xx, a
        broken stream); enough of them in a row call ``on_outlier``."""
        self.errors += 1
        self.consecutive += 1
        if self.consecutive >= CONSECUTIVE_FAILURES and self.on_outlier is not None:
            self.on_outlier(self, reason)

    def answered(self) -> None:
        """A response head that is not a 5xx came back."""
        if self.consecutive:
            self.consecutive = 0

    def snapshot(self) -> dict[str, float]:
        return {
            "requests": float(self.requests),
            "wins": float(self.wins),
            "cancelled": float(self.cancelled),
            "errors": float(self.errors),
            "in_flight": float(self.in_flight),
            "latency_p50_ms": self.latency.percentile(50.0) * 1000.0,
            "latency_p99_ms": self.latency.percentile(99.0) * 1000.0,
        }


class Attempt:
    """One try of a request on one replica: holds an in-flight slot until released."""

    __slots__ = ("released", "replica")

    def __init__(self, replica: ReplicaState) -> None:
        self.replica = replica
        self.released = False
        replica.in_flight += 1
        replica.requests += 1

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.replica.in_flight -= 1
