"""Chaos under load: steady client traffic through the router while spot replicas die.

A daemon serves one spot service on the local provider with seeded random
preemptions (``preemption_rate_per_hour``, a notice ``notice_seconds`` before
each SIGKILL). Client workers on loopback send a bounded number of requests
for a bounded time: GETs (idempotent) and a share of POSTs (non-idempotent,
each with a unique body that the replica writes to a shared ledger before
answering, ``tests/helpers/ledger_server.py``). A sampler asks the router's
own health endpoint several times a second how many replicas it routes to.

:func:`run_chaos` returns the figures: requests sent and failed by method,
POSTs executed twice (the ledger), the share of seconds with a ready replica
and the number of preemptions. Used by ``tests/test_chaos.py`` and
``benchmarks/chaos.py``.
"""

from __future__ import annotations

import asyncio
import collections
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from skyctl.client import ControllerClient
from tests.helpers.daemon import Daemon

LEDGER_SERVER = Path(__file__).resolve().parent / "ledger_server.py"

SPEC = """\
name: chaos
envs:
  LEDGER: "{ledger}"
service:
  readiness_probe:
    path: /health
    initial_delay_seconds: 30
    period_seconds: 0.5
  replicas: {replicas}
resources:
  cloud: local
  use_spot: true
local:
  preemption_rate_per_hour: {rate}
  seed: {seed}
  notice_seconds: {notice}
run: exec {python} {server}
"""


@dataclass
class ChaosResult:
    seconds: float = 0.0
    sent: collections.Counter[str] = field(default_factory=collections.Counter)
    failed: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    post_duplicates: int = 0  # POST bodies the replicas executed more than once
    failed_posts_executed: int = 0  # POSTs the client saw fail that a replica did execute
    seconds_sampled: int = 0
    seconds_ready: int = 0
    preemptions: int = 0
    replicas_used: int = 0
    failure_times: list[tuple[float, str]] = field(default_factory=list)  # (start offset, why)

    @property
    def ready_share(self) -> float:
        return self.seconds_ready / self.seconds_sampled if self.seconds_sampled else 0.0

    def summary(self) -> str:
        return (
            f"{self.seconds:.0f}s, {self.preemptions} preemptions, {self.replicas_used} replicas; "
            f"GET sent {self.sent['GET']} failed {self.failed['GET']}; "
            f"POST sent {self.sent['POST']} failed {self.failed['POST']} "
            f"(failed but executed {self.failed_posts_executed}, executed twice "
            f"{self.post_duplicates}); seconds with a ready replica "
            f"{self.seconds_ready}/{self.seconds_sampled} ({100 * self.ready_share:.1f}%)"
            + (f"; failures: {dict(self.failures)}" if self.failures else "")
        )


def _wait_ready(client: ControllerClient, want: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.call("GET", "/v1/services?name=chaos")[0]["ready_replicas"] >= want:
            return
        time.sleep(0.1)
    raise AssertionError(f"chaos service not ready with {want} replicas within {timeout}s")


async def _worker(
    session: aiohttp.ClientSession,
    base: str,
    rng: random.Random,
    *,
    deadline: float,
    budget: list[int],
    post_share: float,
    post_ms: int,
    result: ChaosResult,
    failed_posts: set[bytes],
) -> None:
    loop = asyncio.get_running_loop()
    start = deadline - result.seconds  # run_chaos sets seconds to the planned length first
    while loop.time() < deadline and budget[0] > 0:
        budget[0] -= 1
        began = loop.time() - start
        method = "POST" if rng.random() < post_share else "GET"
        result.sent[method] += 1
        body = f"p-{budget[0]}-{rng.getrandbits(64):x}".encode()
        try:
            if method == "POST":
                async with session.post(f"{base}/work?ms={post_ms}", data=body) as resp:
                    ok = resp.status == 200 and await resp.read() == body
                    why = f"POST {resp.status}"
            else:
                async with session.get(f"{base}/") as resp:
                    ok = resp.status == 200 and b'"replica"' in await resp.read()
                    why = f"GET {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            ok, why = False, f"{method} {type(exc).__name__}"
        if not ok:
            result.failed[method] += 1
            result.failures[why] += 1
            result.failure_times.append((round(began, 2), why))
            if method == "POST":
                failed_posts.add(body)


async def _sampler(
    session: aiohttp.ClientSession, base: str, deadline: float, samples: list[tuple[float, int]]
) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while loop.time() < deadline:
        try:
            async with session.get(f"{base}/-/skyctl/health") as resp:
                ready = int((await resp.json())["ready_replicas"])
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
            ready = 0
        samples.append((loop.time() - start, ready))
        await asyncio.sleep(0.2)


async def run_chaos(
    home: Path,
    *,
    seed: int = 1,
    seconds: float = 20.0,
    max_requests: int = 50_000,
    concurrency: int = 4,
    replicas: int = 2,
    rate: float = 360.0,
    notice: float = 1.0,
    post_share: float = 0.2,
    post_ms: int = 50,
    keep_service: bool = False,
) -> ChaosResult:
    """Run the load for ``seconds`` (or ``max_requests``) while replicas are preempted."""
    ledger = home / "ledger.txt"
    daemon = Daemon(home)
    result = ChaosResult()
    try:
        client = daemon.start()
        text = SPEC.format(
            ledger=ledger,
            replicas=replicas,
            rate=rate,
            seed=seed,
            notice=notice,
            python=sys.executable,
            server=LEDGER_SERVER,
        )
        svc = client.call("POST", "/v1/services", {"yaml": text})
        base = str(svc["endpoint"])
        await asyncio.to_thread(_wait_ready, client, replicas, 60.0)
        rng = random.Random(seed)
        failed_posts: set[bytes] = set()
        samples: list[tuple[float, int]] = []
        timeout = aiohttp.ClientTimeout(total=30)
        connector = aiohttp.TCPConnector(limit=concurrency + 1)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            loop = asyncio.get_running_loop()
            started = loop.time()
            deadline = started + seconds
            result.seconds = seconds
            budget = [max_requests]
            await asyncio.gather(
                _sampler(session, base, deadline, samples),
                *(
                    _worker(
                        session,
                        base,
                        random.Random(rng.random()),
                        deadline=deadline,
                        budget=budget,
                        post_share=post_share,
                        post_ms=post_ms,
                        result=result,
                        failed_posts=failed_posts,
                    )
                    for _ in range(concurrency)
                ),
            )
            result.seconds = loop.time() - started
        by_second: dict[int, bool] = {}
        for t, ready in samples:
            by_second[int(t)] = by_second.get(int(t), True) and ready > 0
        result.seconds_sampled = len(by_second)
        result.seconds_ready = sum(by_second.values())
        executed = collections.Counter(ledger.read_bytes().splitlines()) if ledger.exists() else {}
        result.post_duplicates = sum(n - 1 for n in executed.values() if n > 1)
        result.failed_posts_executed = sum(1 for body in failed_posts if body in executed)
        status = client.call("GET", "/v1/services?name=chaos")[0]
        result.preemptions = sum(1 for r in status["replicas"] if r["reason"] == "PREEMPTED")
        result.replicas_used = len(status["replicas"])
        if not keep_service:  # keep: its events stay readable after the run
            client.call("DELETE", "/v1/services/chaos")
            await asyncio.to_thread(_wait_gone, client, 60.0)
        return result
    finally:
        daemon.close()


def _wait_gone(client: ControllerClient, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not client.call("GET", "/v1/services"):
            return
        time.sleep(0.1)
