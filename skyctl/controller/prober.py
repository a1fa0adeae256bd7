"""Readiness probes.

One task per service probes every replica that has an endpoint and is
STARTING, READY or NOT_READY, each every ``period_seconds`` (sooner when the
router reports a connection error to it). Only HTTP 200 counts as ready, as in
SkyServe. Results are kept in memory; ``on_result`` hears each one at once
(the routing table follows it in the same loop iteration), the reconciler turns
them into status transitions and is woken when one changes. Probes share one
aiohttp session whose connector keeps connections alive, so a replica probed
every period costs one request, not one TCP handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from skyctl.clock import Clock
from skyctl.spec import ReadinessProbe

log = logging.getLogger(__name__)

#: the shortest sleep of the probe loop between rounds (clock seconds): due
#: probes are started in batches at most this often
SCAN_INTERVAL = 0.25


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


class Prober:
    """Probes a service's replicas on a schedule; ``on_change`` fires when a result flips."""

    def __init__(
        self,
        probe: ReadinessProbe,
        *,
        clock: Clock,
        on_change: Callable[[], None],
        on_result: Callable[[int, bool], None] | None = None,
    ) -> None:
        self.probe = probe
        self._clock = clock
        self._on_change = on_change
        #: called after each probe with its duration (seconds) and outcome (metrics)
        self.on_probe: Callable[[float, bool], None] | None = None
        self._on_result = on_result
        self._targets: dict[int, Target] = {}
        self.results: dict[int, ProbeResult] = {}
        self._due: dict[int, float] = {}
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()  # targets or due times changed

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    def set_targets(self, targets: list[Target]) -> None:
        """The replicas to probe now; results of others are forgotten."""
        wanted = {t.replica_id: t for t in targets}
        for rid in list(self._targets):
            if rid not in wanted or wanted[rid] != self._targets[rid]:
                self._forget(rid)
        for rid, target in wanted.items():
            if rid not in self._targets:
                self._targets[rid] = target
                self.results.setdefault(rid, ProbeResult())
                self._due[rid] = self._clock.now()
                self._kick.set()

    def add_target(self, target: Target) -> None:
        """Probe one more replica (at once); the others are unchanged."""
        if self._targets.get(target.replica_id) != target:
            self.set_targets(
                [*(t for t in self._targets.values() if t.replica_id != target.replica_id), target]
            )

    def probe_soon(self, replica_id: int) -> None:
        """Probe this replica at the next scan (the router saw it fail)."""
        if replica_id in self._targets:
            self._due[replica_id] = self._clock.now()
            self._kick.set()

    def forget(self, rid: int) -> None:
        """Stop probing a replica (it is going away)."""
        self._forget(rid)

    def _forget(self, rid: int) -> None:
        self._targets.pop(rid, None)
        self.results.pop(rid, None)
        self._due.pop(rid, None)
        task = self._inflight.pop(rid, None)
        if task is not None:
            task.cancel()

    async def _loop(self) -> None:
        """Start due probes, then sleep until the next one is due (or a change)."""
        loop = asyncio.get_running_loop()
        while True:
            self._kick.clear()
            now = self._clock.now()
            for rid, due in list(self._due.items()):
                if due <= now and rid not in self._inflight:
                    self._due[rid] = now + self.probe.period_seconds
                    self._inflight[rid] = loop.create_task(self._probe_one(rid))
            waiting = [d for rid, d in self._due.items() if rid not in self._inflight]
            delay = max(SCAN_INTERVAL, min(waiting) - now) if waiting else None
            kicked = asyncio.ensure_future(self._kick.wait())
            timer = asyncio.ensure_future(self._clock.sleep(delay)) if delay is not None else None
            try:
                await asyncio.wait(
                    {kicked} if timer is None else {kicked, timer},
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                kicked.cancel()
                if timer is not None:
                    timer.cancel()

    async def _probe_one(self, rid: int) -> None:
        target = self._targets.get(rid)
        try:
            if target is None:
                return
            started = time.perf_counter()  # a duration, for metrics; not time of day
            ok, detail = await self._request(target.endpoint)
            if self.on_probe is not None:
                self.on_probe(time.perf_counter() - started, ok)
            result = self.results.get(rid)
            if result is None or self._targets.get(rid) != target:
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
        finally:
            if self._inflight.get(rid) is asyncio.current_task():
                del self._inflight[rid]
                self._kick.set()  # its next probe is due in a period: the loop re-plans

    async def _request(self, endpoint: str) -> tuple[bool, str]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # no pool-wide cap: a replica has at most one probe in flight, and a
                # probe queued behind a cap would spend its timeout waiting (with
                # 300 replicas probed every second, healthy ones failed that way)
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60)
            )
        url = endpoint.rstrip("/") + "/" + self.probe.path.lstrip("/")
        timeout = aiohttp.ClientTimeout(total=self.probe.timeout_seconds)
        headers = dict(self.probe.headers)
        try:
            if self.probe.post_data is not None:
                headers.setdefault("Content-Type", "application/json")
                body = self.probe.post_data
                json.loads(body)  # validated by the spec parser; cheap guard
                req = self._session.post(url, data=body, headers=headers, timeout=timeout)
            else:
                req = self._session.get(url, headers=headers, timeout=timeout)
            async with req as resp:
                await resp.read()
                return resp.status == 200, f"HTTP {resp.status}"
        except asyncio.CancelledError:
            raise
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as e:
            return False, type(e).__name__

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._inflight.values()):
            task.cancel()
        for task in list(self._inflight.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._inflight.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
