"""Control-plane scale: the controller's own cost with many services and replicas.

Runs the controller in this process on the real clock against the simulated
provider (``providers.simulated``; its endpoints served by one child process,
so this process's CPU is the controller's alone: reconcile, probes, routers,
store). For each size (services x replicas in all) it prints:

- how long creating the services took (one by one, as the API does) and the
  time until every replica is READY, from the first create (launch latency,
  boot time of the simulated cloud and up to one probe period included:
  ``--launch``, ``--boot``, ``--period``);
- at steady state (everything READY, probes every ``--period`` seconds, for
  ``--steady`` seconds): controller CPU (share of one core) and RSS, event-loop
  lag p50/p99 (a 50 ms timer's overshoot) and "own p99" (the part of it this
  process's own work can account for, see ``LagMeter``: on a shared machine the
  rest is waiting for a core), the longest garbage-collector pause, SQL
  statements per service tick, the machine's
  load average and SQL writes in the window.

The controller runs as the daemon does: start-up frozen (``gc.freeze()``) and
the heap keeper installed (``skyctl.controller.heap``; ``--no-freeze``: neither).
``--stalls`` prints where the steady window's loop stalls over 100 ms came
from (``StallSampler``: the loop thread's stack and CPU during each), the
collections per generation (wall and CPU), the ticks begun per 100 ms, and at
the end the cyclic garbage still held (frozen objects included) with RSS
before and after collecting it.

``--probes SxR`` measures the prober alone: R endpoints of the simulated
server in S services, probed every ``--period`` seconds (probes per second,
failures, CPU per probe, loop lag). ``--local N`` instead runs N replicas of
``manifests/http-server.yaml`` (the shipped 20 s initial delay) on the local
provider and prints the time until all are READY, how many launches that
took, and the loop lag during the burst.

    python -m benchmarks.control_plane                 # 1x10 .. 1000x10000 (long)
    python -m benchmarks.control_plane --quick         # small sizes, a few seconds each
    python -m benchmarks.control_plane --sizes 100x1000 --steady 30
    python -m benchmarks.control_plane --sizes 1000x10000 --timeout 1500 --stalls
    python -m benchmarks.control_plane --local 300
    python -m benchmarks.control_plane --probes 1000x10000   # the prober alone

Goal (issue 13): 10,000 replicas in 1,000 services READY, with loop lag p99
under 100 ms and controller CPU under 50% of a core at steady state with 10 s
probes. Figures are printed, never asserted (docs/architecture.md records a run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import logging
import os
import resource
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from providers.registry import ProviderSet  # noqa: E402
from skyctl.clock import SystemClock  # noqa: E402
from skyctl.controller import Controller  # noqa: E402
from skyctl.controller.heap import HeapKeeper  # noqa: E402
from skyctl.store import Store  # noqa: E402

FULL = ((1, 10), (10, 100), (100, 1000), (1000, 10000))
QUICK = ((1, 10), (10, 100))

SPEC = """\
name: {name}
service:
  readiness_probe:
    path: /health
    initial_delay_seconds: 1200
    period_seconds: {period}
    timeout_seconds: 5
  replicas: {replicas}
resources:
  cloud: simulated
"""


@dataclass
class Figures:
    label: str
    created_seconds: float  # creating the services, one by one as the API does
    ready_seconds: float
    cpu_share: float
    rss_mb: float
    lag_p50_ms: float
    lag_p99_ms: float
    own_p99_ms: float  # the part of the lag this process's own work can account for
    gc_max_ms: float  # the longest garbage-collector pause in the window
    statements_per_tick: float | None  # None: no tick in the window
    ticks: int
    load: float  # the machine's 1-minute load average at the end of the window
    writes: int


class LagMeter:
    """How late a 50 ms timer fires: the event loop's lag.

    On a shared machine part of it is the OS running other processes (this one
    runs at nice 10): ``own`` bounds the part this process caused, the overshoot
    capped by the CPU time the loop's thread used in the sample (a loop blocked
    by its own work uses CPU all along; one waiting for a core uses none).
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self.own: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            t, cpu = time.perf_counter(), time.thread_time()
            await asyncio.sleep(self.interval)
            late = max(0.0, time.perf_counter() - t - self.interval)
            self.samples.append(late)
            self.own.append(min(late, time.thread_time() - cpu))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def percentile(self, q: float, own: bool = False) -> float:
        samples = self.own if own else self.samples
        if not samples:
            return 0.0
        ordered = sorted(samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


class GcMeter:
    """The garbage collector's pauses (each one holds the event loop)."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        # (start, seconds, generation, CPU seconds of the collecting thread)
        self.events: list[tuple[float, float, int, float]] = []
        self._start = self._cpu = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start, self._cpu = time.perf_counter(), time.thread_time()
        else:
            took = time.perf_counter() - self._start
            self.pauses.append(took)
            self.events.append(
                (self._start, took, info["generation"], time.thread_time() - self._cpu)
            )

    def summary(self) -> str:
        """Collections per generation in the window: how many, their total and longest."""
        parts = []
        for gen in (0, 1, 2):
            times = [d for _t, d, g, _c in self.events if g == gen]
            cpus = [c for _t, _d, g, c in self.events if g == gen]
            if times:
                parts.append(
                    f"gen{gen} {len(times)}x total {sum(times) * 1000:.0f} ms "
                    f"max {max(times) * 1000:.0f} ms (CPU max {max(cpus) * 1000:.0f} ms)"
                )
        return "GC: " + ("; ".join(parts) or "none") + f"; frozen {gc.get_freeze_count()}"

    def __enter__(self) -> GcMeter:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    @property
    def max_ms(self) -> float:
        return max(self.pauses, default=0.0) * 1000


class StallSampler:
    """Where the loop's long stalls come from: a watchdog thread samples the loop
    thread's stack while the loop has not run for ``threshold`` seconds.

    A heartbeat callback on the loop notes when it last ran (every ``beat``
    seconds); the thread looks every ``every`` seconds and, while the loop is
    stalled, takes the loop thread's innermost frames (``sys._current_frames``)
    and the process CPU time. A collection by the garbage collector holds the
    interpreter lock, so the thread cannot sample it: GcMeter's pauses tell those.
    A stall's CPU is the loop thread's own (from when the stall was noticed): a
    stall with little of it was the process waiting for a core. The samples lean
    to where the loop thread releases the lock (SQLite calls, I/O): they tell
    which work ran, not which line of it cost most.
    """

    def __init__(self, threshold: float = 0.1, beat: float = 0.01, every: float = 0.005) -> None:
        self.threshold, self.beat, self.every = threshold, beat, every
        self.stalls: list[tuple[float, float, float, Counter[str]]] = []  # at, s, cpu s, stacks
        self._last = time.perf_counter()
        self._handle: asyncio.TimerHandle | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ident = threading.get_ident()
        self._clock = time.CLOCK_THREAD_CPUTIME_ID

    def start(self) -> None:
        self._ident = threading.get_ident()
        self._clock = time.pthread_getcpuclockid(self._ident)  # the loop thread's CPU
        self._tick()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        self._last = time.perf_counter()
        self._handle = asyncio.get_running_loop().call_later(self.beat, self._tick)

    @staticmethod
    def _where(frame: Any) -> str:
        frames = []  # innermost first: (file, line, function)
        while frame is not None:
            frames.append((frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name))
            frame = frame.f_back
        root = str(ROOT)
        ours = [f for f in frames if f[0].startswith(root) and "benchmarks" not in f[0]]
        parts = [f"{Path(f[0]).name}:{f[1]} {f[2]}" for f in ours[:3]]
        if frames and frames[0] not in ours[:1]:
            f = frames[0]
            parts.insert(0, f"[{Path(f[0]).name}:{f[1]} {f[2]}]")
        return " < ".join(parts)

    def _watch(self) -> None:
        stalled_at = None
        cpu0 = 0.0
        stacks: Counter[str] = Counter()
        last = self._last
        while not self._stop.wait(self.every):
            now = time.perf_counter()
            if self._last != last and stalled_at is not None:  # the loop ran again
                took = self._last - stalled_at
                if took >= self.threshold:
                    cpu = time.clock_gettime(self._clock) - cpu0
                    self.stalls.append((stalled_at, took, cpu, stacks))
                stalled_at = None
            last = self._last
            if now - last < self.threshold / 2:
                continue
            if stalled_at is None:
                stalled_at, cpu0, stacks = last, time.clock_gettime(self._clock), Counter()
            frame = sys._current_frames().get(self._ident)
            if frame is not None:
                stacks[self._where(frame)] += 1

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def report(self, gc_pauses: list[tuple[float, float]], top: int = 12) -> str:
        """The stalls over the threshold, the longest first, each with its main stack."""
        lines = [f"stalls >= {self.threshold * 1000:.0f} ms: {len(self.stalls)}"]
        for at, took, cpu, stacks in sorted(self.stalls, key=lambda s: -s[1])[:top]:
            gcs = [d for t, d in gc_pauses if at - 0.01 <= t <= at + took]
            gc_note = f", GC {sum(gcs) * 1000:.0f} ms" if gcs else ""
            where = stacks.most_common(1)[0][0] if stacks else "(not sampled)"
            lines.append(
                f"  {took * 1000:7.0f} ms (CPU {cpu * 1000:.0f} ms{gc_note}, "
                f"{sum(stacks.values())} samples): {where}"
            )
        total: Counter[str] = Counter()
        for _at, _took, _cpu, stacks in self.stalls:
            total.update(stacks)
        lines.append("  samples in stalls, by stack:")
        lines += [f"    {n:5d}  {where}" for where, n in total.most_common(top)]
        return "\n".join(lines)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def profiler(args: argparse.Namespace, name: str) -> Any:
    """With ``--profile DIR``: profile from now until the returned function is
    called, into DIR/<name>.pstats, in CPU time (other processes on a shared machine
    do not show in it; the CPU figures then include cProfile's own cost)."""
    if not args.profile:
        return lambda: None
    prof = cProfile.Profile(time.process_time)
    prof.enable()

    def done() -> None:
        prof.disable()
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        prof.dump_stats(str(Path(args.profile) / f"{name}.pstats"))

    return done


async def poll(predicate: Any, timeout: float) -> bool:
    """Wait (real time) until ``predicate()`` holds; False when ``timeout`` passed first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.5)
    return True


def count_ready(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("SELECT count(*) FROM replicas WHERE status='READY'").fetchone()[0])


async def run_size(services: int, replicas: int, args: argparse.Namespace) -> Figures:
    per = max(1, replicas // services)
    with tempfile.TemporaryDirectory() as tmp:
        clock = SystemClock()
        store = Store(Path(tmp) / "state.db")
        config: dict[str, dict[str, Any]] = {
            "simulated": {
                "launch_seconds": args.launch,
                "boot_seconds": args.boot,
                "server": "process",
                "max_concurrent_calls": 512,
            }
        }
        providers = ProviderSet(config=config, clock=clock, local_state=Path(tmp) / "local")
        controller = Controller(store, providers, clock, tick_seconds=2.0)
        await controller.start()
        keeper = None
        if not args.no_freeze:  # as the daemon does once it has restored the services
            gc.collect()
            gc.freeze()
            keeper = HeapKeeper().install()
        reclaimer = asyncio.create_task(keeper.reclaim_every(clock)) if keeper else None
        runner = asyncio.create_task(controller.run())
        lag = LagMeter()
        try:
            t0 = time.monotonic()
            prof = profiler(args, f"{services}x{services * per}-create")
            for i in range(services):
                yaml = SPEC.format(name=f"s{i}", period=args.period, replicas=per)
                await controller.create_service(yaml, None)
            created = time.monotonic() - t0
            prof()
            want = services * per
            if not await poll(lambda: count_ready(store.path) >= want, args.timeout):
                # measured all the same: the steady figures are then of a controller
                # still replacing replicas, and say so
                print(
                    f"{services}x{want}: {count_ready(store.path)} READY after {args.timeout:g}s; "
                    "the figures below are not of a steady state",
                    flush=True,
                )
            ready_seconds = time.monotonic() - t0
            await asyncio.sleep(args.settle)  # the last ticks and probes settle
            statements: list[str] = []

            def count(_c: Any, _cur: Any, sql: str, *_a: Any) -> None:
                statements.append(sql.lstrip()[:16].upper())

            ticks = 0
            tick = controller.reconciler.tick
            tick_slots: Counter[int] = Counter()  # ticks begun in each 100 ms

            async def counted(rt: Any, svc: Any) -> bool:
                nonlocal ticks
                ticks += 1
                tick_slots[int(time.monotonic() * 10)] += 1
                return await tick(rt, svc)

            controller.reconciler.tick = counted  # type: ignore[method-assign]
            event.listen(store._engine, "before_cursor_execute", count)
            lag.start()
            stalls = StallSampler() if args.stalls else None
            if stalls is not None:
                stalls.start()
            cpu0, w0 = cpu_seconds(), time.monotonic()
            prof = profiler(args, f"{services}x{services * per}-steady")
            with GcMeter() as gcm:
                await asyncio.sleep(args.steady)
            prof()
            cpu = (cpu_seconds() - cpu0) / (time.monotonic() - w0)
            rss = rss_mb()
            await lag.stop()
            if stalls is not None:
                stalls.stop()
                print(stalls.report([(t, d) for t, d, _g, _c in gcm.events]), flush=True)
                kept = (
                    f"; heap keeper: {keeper.freezes} freezes, "
                    f"{keeper.full_collections} full collections since the first create"
                    if keeper is not None
                    else ""
                )
                print(gcm.summary() + kept, flush=True)
                print(
                    f"ticks begun in one 100 ms: at most {max(tick_slots.values(), default=0)}, "
                    f"mean {ticks / max(1, args.steady * 10):.1f}",
                    flush=True,
                )
                # the cyclic garbage still held (with the keeper: frozen ones included)
                before = rss_mb()
                if keeper is not None:
                    gc.unfreeze()
                t, freed = time.perf_counter(), gc.collect()
                print(
                    f"{'unfrozen and ' if keeper is not None else ''}collected at the end: "
                    f"{freed} objects were garbage "
                    f"({(time.perf_counter() - t) * 1000:.0f} ms), RSS {before:.0f} -> "
                    f"{rss_mb():.0f} MB",
                    flush=True,
                )
            event.remove(store._engine, "before_cursor_execute", count)
            reads = ("SELECT", "BEGIN", "COMMIT", "ROLLBACK")
            writes = sum(
                1 for s in statements if s.startswith("BEGIN IMMEDIATE") or not s.startswith(reads)
            )
            return Figures(
                f"{services} x {want}",
                created,
                ready_seconds,
                cpu,
                rss,
                lag.percentile(0.50),
                lag.percentile(0.99),
                lag.percentile(0.99, own=True),
                gcm.max_ms,
                len(statements) / ticks if ticks else None,
                ticks,
                os.getloadavg()[0],
                writes,
            )
        finally:
            await lag.stop()
            controller.request_stop()
            await runner
            await controller.stop(0)
            store.close()
            if reclaimer is not None:
                reclaimer.cancel()
            if keeper is not None:
                keeper.uninstall()
                gc.unfreeze()


async def run_probes(services: int, replicas: int, args: argparse.Namespace) -> None:
    """The probes alone: ``replicas`` endpoints of the simulated server in ``services``
    Probers (one shared scheduler), probed every ``--period`` seconds."""
    from providers.simulated_server import RemoteEndpoints
    from skyctl.controller.prober import Prober, Target
    from skyctl.spec import ReadinessProbe

    endpoints = await RemoteEndpoints.start()
    clock = SystemClock()
    probe = ReadinessProbe(path="/health", period_seconds=args.period, timeout_seconds=5)
    counts = {True: 0, False: 0}

    def heard(_rid: int, ok: bool) -> None:
        counts[ok] += 1

    probers = [
        Prober(probe, clock=clock, on_change=lambda: None, on_result=heard) for _ in range(services)
    ]
    lag = LagMeter()
    try:
        per = replicas // services
        for s, prober in enumerate(probers):
            prober.start()
            targets = []
            for i in range(per):
                await endpoints.add(f"p{s}-{i}", boot_seconds=0)
                targets.append(Target(i, f"{endpoints.base_url}/i/p{s}-{i}"))
            prober.set_targets(targets)
        await asyncio.sleep(args.period + args.settle)  # the first round, then spread
        counts[True] = counts[False] = 0
        lag.start()
        cpu0, w0 = cpu_seconds(), time.monotonic()
        await asyncio.sleep(args.steady)
        took = time.monotonic() - w0
        cpu = (cpu_seconds() - cpu0) / took
        await lag.stop()
        n = counts[True] + counts[False]
        print(
            f"probes only, {services} x {per * services}: {n / took:.0f} probes/s, "
            f"{counts[False]} failed, CPU {cpu:.1%} "
            f"({cpu * took / max(1, n) * 1e6:.0f} us a probe), "
            f"loop lag p50 {lag.percentile(0.5):.1f} ms p99 {lag.percentile(0.99):.1f} ms "
            f"(own p99 {lag.percentile(0.99, own=True):.1f} ms), load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    finally:
        await lag.stop()
        for prober in probers:
            await prober.close()
        await endpoints.close()


async def run_local(n: int, args: argparse.Namespace) -> None:
    """N replicas of the shipped http-server manifest on the local provider."""
    yaml = (
        (ROOT / "manifests" / "http-server.yaml")
        .read_text()
        .replace("replicas: 2", f"replicas: {n}")
    )
    with tempfile.TemporaryDirectory() as tmp:
        clock = SystemClock()
        store = Store(Path(tmp) / "state.db")
        providers = ProviderSet(config={}, clock=clock, local_state=Path(tmp) / "local")
        controller = Controller(store, providers, clock, tick_seconds=2.0)
        await controller.start()
        runner = asyncio.create_task(controller.run())
        lag = LagMeter()
        lag.start()
        try:
            t0 = time.monotonic()
            await controller.create_service(yaml, str(ROOT / "manifests" / "http-server.yaml"))
            await poll(lambda: count_ready(store.path) >= n, args.timeout)
            took = time.monotonic() - t0
            ready = count_ready(store.path)
            rows = store.list_replicas("http-server", include_terminated=True)
            print(
                f"local, 1 x {n} (http-server.yaml, 20 s initial delay): "
                f"{ready}/{n} READY in {took:.1f} s, {len(rows)} launches, "
                f"loop lag p50 {lag.percentile(0.5):.1f} ms p99 {lag.percentile(0.99):.1f} ms, "
                f"RSS {rss_mb():.0f} MB",
                flush=True,
            )
            await controller.delete_service("http-server")
            await poll(lambda: store.get_service("http-server") is None, 300)
        finally:
            await lag.stop()
            controller.request_stop()
            await runner
            await controller.stop(0)
            store.close()


def sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        s, _, r = part.partition("x")
        if not (s.isdigit() and r.isdigit()) or int(s) < 1 or int(r) < int(s):
            raise argparse.ArgumentTypeError(
                f"--sizes: expected SERVICESxREPLICAS[,...] with REPLICAS >= SERVICES >= 1, "
                f"got {part!r}"
            )
        out.append((int(s), int(r)))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, short windows")
    parser.add_argument("--sizes", type=sizes, help="e.g. 1x10,100x1000")
    parser.add_argument("--steady", type=float, default=30.0, help="steady window (s)")
    parser.add_argument("--settle", type=float, default=12.0, help="wait after all READY (s)")
    parser.add_argument("--period", type=float, default=10.0, help="probe period (s)")
    parser.add_argument("--launch", type=float, default=1.0, help="launch latency (s)")
    parser.add_argument("--boot", type=float, default=5.0, help="boot time (s)")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after (s)")
    parser.add_argument(
        "--asyncio-loop", action="store_true", help="asyncio's own loop, not uvloop"
    )
    parser.add_argument("--profile", metavar="DIR", help="cProfile creation and steady state")
    parser.add_argument(
        "--no-freeze",
        action="store_true",
        help="without the daemon's garbage-collector policy (gc.freeze, skyctl.controller.heap)",
    )
    parser.add_argument(
        "--stalls",
        action="store_true",
        help="print the steady window's loop stalls over 100 ms, with the stack that ran",
    )
    parser.add_argument(
        "--probes", type=sizes, metavar="SxR", help="the probes alone, e.g. 1000x10000"
    )
    parser.add_argument("--local", type=int, metavar="N", help="N local replicas instead")
    args = parser.parse_args(argv)
    if args.quick:
        args.steady, args.settle, args.launch, args.boot = 3.0, 2.0, 0.2, 0.5
        args.period = 1.0
    logging.basicConfig(level=logging.ERROR)
    if not args.asyncio_loop:
        with contextlib.suppress(ImportError):  # the loop the daemon runs on
            import uvloop

            uvloop.install()
    if args.probes:
        for services, replicas in args.probes:
            asyncio.run(run_probes(services, replicas, args))
        return
    if args.local:
        asyncio.run(run_local(args.local, args))
        return
    print(
        f"{'services x replicas':>20} {'created':>8} {'all READY':>10} {'CPU':>6} {'RSS':>8} "
        f"{'lag p50':>8} {'lag p99':>8} {'own p99':>8} {'GC max':>8} {'ticks':>6} {'SQL/tick':>8} "
        f"{'load':>5} {'writes':>7}",
        flush=True,
    )
    for services, replicas in args.sizes or (QUICK if args.quick else FULL):
        f = asyncio.run(run_size(services, replicas, args))
        print(
            f"{f.label:>20} {f.created_seconds:>7.1f}s {f.ready_seconds:>9.1f}s "
            f"{f.cpu_share:>6.0%} {f.rss_mb:>6.0f}MB "
            f"{f.lag_p50_ms:>6.1f}ms {f.lag_p99_ms:>6.1f}ms {f.own_p99_ms:>6.1f}ms "
            f"{f.gc_max_ms:>6.1f}ms {f.ticks:>6} "
            f"{'-' if f.statements_per_tick is None else f'{f.statements_per_tick:.1f}':>8} "
            f"{f.load:>5.1f} {f.writes:>7}",
            flush=True,
        )
    print(
        f"(probes every {args.period:g} s; steady window {args.steady:g} s; simulated launch "
        f"{args.launch:g} s, boot {args.boot:g} s)"
    )


if __name__ == "__main__":
    main()
