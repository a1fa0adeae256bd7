"""Readiness probes: one scheduler for every service, probes spread over the period.

A :class:`Prober` is one service's part: the replicas to probe (those with an
endpoint that are STARTING, READY or NOT_READY), how (its ``ReadinessProbe``)
and their latest results. Only HTTP 200 counts as ready, as in SkyServe.
``on_result`` hears each result at once (the routing table follows it in the
same loop iteration); the reconciler turns results into status transitions
and is woken (``on_change``) when one flips or fails.

Every Prober on one clock (one controller) shares one :class:`ProbeScheduler`:

- one task on the injected clock starts the probes that are due, at most every
  :data:`SCAN_INTERVAL`; no task per service and, for a probe on a kept-alive
  connection, no task per probe: the request is written and its response head
  is answered through callbacks;
- a new replica is probed at once; after that each replica is probed on its own
  phase of the period (the k-th target gets the phase ``frac(k * 0.618...)``
  of the period, a low-discrepancy sequence), so replicas launched in one burst
  are not probed in one burst every period;
- one keep-alive pool (:class:`skyctl.router.client.Pool`, the router's own
  HTTP/1.1 client) whose connections are kept per scheme, host and port and
  shared by every service: 10,000 endpoints of one server need a few
  connections, not one each. A probe that finds a kept-alive connection closed
  by the replica is sent once more on a new connection.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import json
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from skyctl.clock import Clock
from skyctl.router.client import ConnectFailed, Disconnected, Pool, Response
from skyctl.router.origin import Origin
from skyctl.spec import ReadinessProbe

log = logging.getLogger(__name__)

#: the shortest sleep of the scheduler between rounds (clock seconds): due
#: probes are started in batches at most this often
SCAN_INTERVAL = 0.25
#: probes in flight at once, for every service; due ones beyond it wait their
#: turn (their timeout starts when they are sent), so a burst (a restart with
#: thousands of replicas) does not open thousands of connections at once
MAX_IN_FLIGHT = 256
#: idle probe connections are closed after this long (real seconds)
KEEPALIVE_SECONDS = 60.0
_GOLDEN = 0.6180339887498949  # the fractional part of the golden ratio
_SAFE = "/?=&%:@!$'()*+,;~-._"  # kept as they are in a probe path (the rest is %-encoded)


@dataclass
class ProbeResult:
    ok: bool | None = None  # None: not probed yet
    consecutive_failures: int = 0
    last_at: float = 0.0
    detail: str = ""


@dataclass(frozen=True)
class Target:
    replica_id: int
    endpoint: str
    # the probe of the replica's own version (None: the service's current one): in a
    # rolling update the old replicas keep passing their own probe (as SkyServe's
    # per-version probe), not the new version's path, which they may not serve
    probe: ReadinessProbe | None = None


class _Request:
    """A probe's request, built once per target and probe settings."""

    __slots__ = ("body", "head", "method", "origin", "timeout")

    def __init__(self, probe: ReadinessProbe, endpoint: str) -> None:
        where = Origin.parse(endpoint)
        # connections are kept per scheme, host and port: the endpoint's path is in the target
        self.origin = where._replace(prefix=b"")
        target = where.prefix + quote(
            "/" + probe.path.lstrip("/"), safe=_SAFE, encoding="utf-8"
        ).encode("ascii")
        names = {key.lower() for key in probe.headers}
        lines = [b"Accept: */*", b"User-Agent: skyctl-probe"]
        if "host" not in names:  # the spec's own Host header wins
            lines.insert(0, b"Host: " + where.host_header)
        for key, value in probe.headers.items():
            if any(c in key + value for c in "\r\n\0") or ":" in key:
                raise ValueError(f"readiness_probe.headers.{key}: not a valid header")
            lines.append(f"{key}: {value}".encode())
        self.body = b""
        self.method = b"GET"
        if probe.post_data is not None:
            json.loads(probe.post_data)  # validated by the spec parser; cheap guard
            self.method = b"POST"
            self.body = probe.post_data.encode()
            if "content-type" not in names:
                lines.append(b"Content-Type: application/json")
            lines.append(b"Content-Length: %d" % len(self.body))
        self.head = b"%b %b HTTP/1.1\r\n%b\r\n\r\n" % (self.method, target, b"\r\n".join(lines))
        self.timeout = probe.timeout_seconds


class _Entry:
    """One replica's schedule and its probe in flight; the pool's listener for it."""

    __slots__ = (
        "due",
        "gone",
        "owner",
        "phase",
        "queued",
        "request",
        "resp",
        "retried",
        "reused",
        "started",
        "target",
        "task",
    )

    def __init__(self, owner: Prober, target: Target, phase: float) -> None:
        self.owner = owner
        self.target = target
        self.phase = phase  # a share of the period: where in it this replica is probed
        self.request: _Request | ValueError | None = None  # built at its first probe
        self.due = 0.0
        self.gone = False
        self.resp: Response | None = None
        self.task: asyncio.Task[None] | None = None
        self.started = 0.0  # perf_counter at the start of the probe in flight; 0: none
        self.reused = False  # sent on a kept-alive connection
        self.retried = False
        self.queued = False  # due, waiting for a free slot (MAX_IN_FLIGHT)

    @property
    def settings(self) -> ReadinessProbe:
        """The probe this replica gets: its version's, else the service's."""
        return self.target.probe or self.owner.probe

    @property
    def busy(self) -> bool:
        return self.started > 0 or self.queued

    # ---- the pool's Listener
    def on_head(self, resp: Response) -> None:
        if self.gone:
            return
        if resp.body.complete:  # the usual case: the body came with the head
            self._finish(resp.status == 200, f"HTTP {resp.status}")
        else:
            self.task = asyncio.get_running_loop().create_task(self._drain(resp))

    def on_error(self, resp: Response | None, exc: BaseException) -> None:
        if self.gone:
            return
        if self.reused and not self.retried and isinstance(exc, Disconnected):
            # the replica closed the kept-alive connection as we wrote: once more, anew
            self.retried = True
            self.task = asyncio.get_running_loop().create_task(self.owner.scheduler.connect(self))
            return
        self._finish(False, type(exc).__name__)

    async def _drain(self, resp: Response) -> None:
        """The body did not come with the head: read it within the probe's time."""
        left = self.settings.timeout_seconds - (time.perf_counter() - self.started)
        try:
            async with asyncio.timeout(max(0.0, left)):
                while await resp.body.read():
                    pass
        except asyncio.CancelledError:
            resp.release()
            raise
        except Exception as e:  # a timeout, a broken connection: the probe failed
            resp.release()
            self._finish(False, type(e).__name__)
            return
        resp.release()
        self._finish(resp.status == 200, f"HTTP {resp.status}")

    def _finish(self, ok: bool, detail: str) -> None:
        took = time.perf_counter() - self.started
        self._stop()
        self.resp = None
        self.task = None
        if not self.gone:
            self.owner._record(self, ok, detail, took)

    def cancel(self) -> None:
        self.gone = True
        self.queued = False  # (left in the waiting line, skipped there)
        resp, self.resp = self.resp, None
        if resp is not None:
            resp.release()  # closes its connection unless the response arrived whole
        task, self.task = self.task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self._stop()

    def _stop(self) -> None:
        if self.started:
            self.started = 0.0
            self.owner.scheduler.finished()


class ProbeScheduler:
    """Starts every service's due probes from one task (see the module docstring)."""

    def __init__(
        self,
        clock: Clock,
        *,
        scan_interval: float = SCAN_INTERVAL,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.clock = clock
        self.scan_interval = scan_interval
        self.max_in_flight = max_in_flight
        self._waiting: collections.deque[_Entry] = collections.deque()
        self._draining = False
        self.loop = asyncio.get_running_loop()
        self.probes_started = 0  # ever (tests and benchmarks read it)
        self.in_flight = 0  # probes started and not finished
        self._heap: list[tuple[float, int, _Entry]] = []
        self._seq = itertools.count()
        self._phases = itertools.count(1)
        self._probers: set[Prober] = set()
        self._pool: Pool | None = None
        self._task: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()
        self._wake_at = float("inf")  # when the scheduler's sleep ends

    @property
    def pool(self) -> Pool:
        if self._pool is None:
            self._pool = Pool(connect_timeout=60.0, read_timeout=60.0, keepalive=KEEPALIVE_SECONDS)
        return self._pool

    def next_phase(self) -> float:
        return (next(self._phases) * _GOLDEN) % 1.0

    def attach(self, prober: Prober) -> None:
        self._probers.add(prober)
        if self._task is None:
            self._task = self.loop.create_task(self._run())

    async def detach(self, prober: Prober) -> None:
        """A prober closed; the last one out stops the task and closes the pool."""
        self._probers.discard(prober)
        if self._probers:
            return
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
        self._heap.clear()
        self._waiting.clear()

    def schedule(self, entry: _Entry, due: float) -> None:
        entry.due = due
        heapq.heappush(self._heap, (due, next(self._seq), entry))
        if due < self._wake_at:
            self._kick.set()

    def following(self, entry: _Entry, now: float) -> float:
        """The next time on the entry's phase, at least a scan interval from ``now``."""
        period = entry.settings.period_seconds
        due = now + (entry.phase * period - now) % period
        return due + period if due - now < self.scan_interval else due

    async def _run(self) -> None:
        while True:
            self._kick.clear()
            now = self.clock.now()
            heap = self._heap
            while heap and heap[0][0] <= now:
                due, _, entry = heapq.heappop(heap)
                if entry.gone or entry.due != due:
                    continue  # forgotten, or rescheduled since
                self.schedule(entry, self.following(entry, now))
                if not entry.busy:  # (a probe still running or waiting skips this turn)
                    if self.in_flight < self.max_in_flight:
                        self._start(entry)
                    else:
                        entry.queued = True
                        self._waiting.append(entry)
            delay = max(self.scan_interval, heap[0][0] - now) if heap else None
            self._wake_at = now + delay if delay is not None else float("inf")
            kicked = asyncio.ensure_future(self._kick.wait())
            timer = asyncio.ensure_future(self.clock.sleep(delay)) if delay is not None else None
            try:
                await asyncio.wait(
                    {kicked} if timer is None else {kicked, timer},
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                kicked.cancel()
                if timer is not None:
                    timer.cancel()

    def finished(self) -> None:
        """A probe ended: a waiting one may go (soon, not inside the pool's callback)."""
        self.in_flight -= 1
        if self._waiting and not self._draining:
            self._draining = True
            self.loop.call_soon(self._start_waiting)

    def _start_waiting(self) -> None:
        self._draining = False
        while self._waiting and self.in_flight < self.max_in_flight:
            entry = self._waiting.popleft()
            if entry.queued and not entry.gone:
                entry.queued = False
                self._start(entry)

    def _start(self, entry: _Entry) -> None:
        self.probes_started += 1
        self.in_flight += 1
        entry.started = time.perf_counter()
        entry.retried = False
        request = entry.request
        if request is None:
            try:
                request = entry.request = _Request(entry.settings, entry.target.endpoint)
            except ValueError as e:
                request = entry.request = e
        if isinstance(request, ValueError):  # an endpoint or a header that cannot be sent
            entry._finish(False, f"ValueError: {request}")
            return
        resp = self.pool.begin(
            request.origin, request.method, request.head, request.body, request.timeout, False,
            entry,
        )  # fmt: skip
        if resp is None:  # no idle connection: open one
            entry.reused = False
            entry.task = self.loop.create_task(self.connect(entry))
        else:
            entry.reused = True
            entry.resp = resp

    async def connect(self, entry: _Entry) -> None:
        """Send the entry's probe on a new connection (within the probe's timeout)."""
        request = entry.request
        assert isinstance(request, _Request)
        left = request.timeout - (time.perf_counter() - entry.started)
        try:
            async with asyncio.timeout(max(0.0, left)):
                conn = await self.pool.connect(request.origin)
        except (TimeoutError, ConnectFailed) as e:
            entry.task = None
            entry._finish(False, type(e).__name__)
            return
        entry.task = None
        if entry.gone:
            conn.abort()
            return
        left = request.timeout - (time.perf_counter() - entry.started)
        entry.resp = conn.begin(
            request.method, request.head, request.body, max(0.0, left), False, entry
        )


_shared: weakref.WeakKeyDictionary[Clock, ProbeScheduler] = weakref.WeakKeyDictionary()


def shared_scheduler(clock: Clock) -> ProbeScheduler:
    """The scheduler of every Prober on ``clock`` in this event loop (one per controller)."""
    scheduler = _shared.get(clock)
    if scheduler is None or scheduler.loop is not asyncio.get_running_loop():
        scheduler = _shared[clock] = ProbeScheduler(clock)
    return scheduler


class Prober:
    """One service's probes; ``on_change`` fires when a result flips (or fails)."""

    def __init__(
        self,
        probe: ReadinessProbe,
        *,
        clock: Clock,
        on_change: Callable[[], None],
        on_result: Callable[[int, bool], None] | None = None,
        scheduler: ProbeScheduler | None = None,
    ) -> None:
        """``scheduler``: default, the one shared by every Prober on ``clock``."""
        self._probe = probe
        self._clock = clock
        self._on_change = on_change
        #: called after each probe with its duration (seconds) and outcome (metrics)
        self.on_probe: Callable[[float, bool], None] | None = None
        self._on_result = on_result
        self.scheduler = scheduler or shared_scheduler(clock)
        self._entries: dict[int, _Entry] = {}
        self.results: dict[int, ProbeResult] = {}
        self._started = False

    @property
    def probe(self) -> ReadinessProbe:
        return self._probe

    @probe.setter
    def probe(self, probe: ReadinessProbe) -> None:
        """New settings (a new version): requests are built anew from the next probe on."""
        self._probe = probe
        for entry in self._entries.values():
            entry.request = None

    def start(self) -> None:
        if not self._started:
            self._started = True
            self.scheduler.attach(self)
            now = self._clock.now()
            for entry in self._entries.values():
                self.scheduler.schedule(entry, now)

    def set_targets(self, targets: list[Target]) -> None:
        """The replicas to probe now; results of others are forgotten."""
        wanted = {t.replica_id: t for t in targets}
        for rid, entry in list(self._entries.items()):
            if wanted.get(rid) != entry.target:
                self._forget(rid)
        for rid, target in wanted.items():
            if rid not in self._entries:
                self._add(target)

    def add_target(self, target: Target) -> None:
        """Probe one more replica (at once); the others are unchanged."""
        entry = self._entries.get(target.replica_id)
        if entry is not None and entry.target == target:
            return
        if entry is not None:
            self._forget(target.replica_id)
        self._add(target)

    def _add(self, target: Target) -> None:
        entry = _Entry(self, target, self.scheduler.next_phase())
        self._entries[target.replica_id] = entry
        self.results.setdefault(target.replica_id, ProbeResult())
        if self._started:
            self.scheduler.schedule(entry, self._clock.now())

    def probe_soon(self, replica_id: int) -> None:
        """Probe this replica at the next scan (the router saw it fail)."""
        entry = self._entries.get(replica_id)
        if entry is not None and self._started and not entry.busy:
            self.scheduler.schedule(entry, self._clock.now())

    def forget(self, rid: int) -> None:
        """Stop probing a replica (it is going away)."""
        self._forget(rid)

    def _forget(self, rid: int) -> None:
        entry = self._entries.pop(rid, None)
        self.results.pop(rid, None)
        if entry is not None:
            entry.cancel()

    def _record(self, entry: _Entry, ok: bool, detail: str, took: float) -> None:
        if self.on_probe is not None:
            self.on_probe(took, ok)
        rid = entry.target.replica_id
        result = self.results.get(rid)
        if result is None or self._entries.get(rid) is not entry:
            return
        changed = result.ok != ok
        result.ok = ok
        result.detail = detail
        result.last_at = self._clock.now()
        result.consecutive_failures = 0 if ok else result.consecutive_failures + 1
        if self._on_result is not None:
            self._on_result(rid, ok)
        if changed or not ok:
            self._on_change()

    async def close(self) -> None:
        """Stop probing (the last results stay readable)."""
        entries, self._entries = self._entries, {}
        for entry in entries.values():
            entry.cancel()
        if self._started:
            self._started = False
            await self.scheduler.detach(self)
