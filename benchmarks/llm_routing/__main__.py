"""``python -m benchmarks.llm_routing``: cache-aware routing against its peers, no GPU.

Prints one table per workload: for each replica count and load, every policy
side by side: in the steady state (after a 30 s warm-up, before the
preemption halfway through) the cached share of prompt tokens and its ceiling
(the share an unbounded cache shared by every replica would have held: what
no routing can beat; a goal of 2x least_load's share is out of reach when the
ceiling is under it), mean and P99
time to first token, max/mean of the replicas' time-averaged in-flight
counts; then after one replica's preemption the seconds from which the hit
rate stays within 90% of the same seed's run without the preemption (10 s
windows of the seeds pooled, until the replacement joins a minute later: "not
back" if the last is still short; beside it the slowest seed's own reading and
the reading before these: the end of the first window back at 90% of the
minute before) and the P99 time to first token of the requests
sent in the minute after. Then the goals checked at 70%
load. Virtual time: a 300 s run takes a few seconds of CPU.

Seeds: the defaults (101, 102) are held out; the one constant tuned here
(``policies.cache_aware.DEFAULT_SLACK``) was chosen on seeds 1 and 2, and
checked once it was fixed on 303 and 304, never run before. Later changes to
the policy (the pending-prefill tie-break, which has no constant; the
time-averaged exception to the bound, whose window,
``policies.cache_aware.DEFAULT_AVERAGE_SECONDS``, was chosen between 10 and
30 s; the chat turn keys, ``policies.cache_keys``, which have no constant)
were tried on seeds 1 and 2 only; the held-out pairs are run once they are
fixed. Fresh pairs, each run once and never again: 7001 and 7002 (after the
time-averaged exception), 9101 and 9102 (after the turn keys), 5501 and 5502
(after the paired recovery reading and the think times drawn per conversation,
which changed every run's trajectory: the held-out pairs were run again with
them), 6611 and 6612 (after the holders' room over the bound,
``policies.cache_aware.HOLDER_ROOM``, chosen on seeds 1 and 2 among 1, 2 and 3).
The recovery's reading (paired, seeds pooled, until the replacement
joins) was chosen on seeds 1 and 2 from its noise with no preemption.
``--policies ... cache_aware_capacity`` (the index bounded by each replica's
cache, ``service.router.cache_aware.replica_cache_bytes``) has no constant
tuned: its bound is the simulated replica's cache (its sensitivity measured on
seeds 1 to 10); held out: 4401 and 4402, 5501 and 5502, and the fresh 8801 and
8802. ``cache_aware`` now learns that bound from what each simulated replica
publishes (``policies.cache_aware.Capacity``, no constant tuned);
``--policies ... cache_aware_unbounded`` is the default before it. Measured on
seeds 1 and 2, the held-out pairs above, and the fresh 7321 and 7322.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence

from benchmarks.llm_routing.routers import POLICIES, VARIANTS
from benchmarks.llm_routing.run import (
    REPLACEMENT,
    Config,
    Result,
    pooled,
    recovery_paired,
    run,
)
from benchmarks.llm_routing.workloads import WORKLOADS

HELD_OUT = (101, 102)
SHARED = ("chat", "agents", "fewshot")


class Pooled:
    """Results of the same setting over several seeds."""

    def __init__(self, results: Sequence[Result]) -> None:
        self.prompt = sum(r.prompt_tokens for r in results)
        self.cached = sum(r.cached_tokens for r in results)
        self.reusable = sum(r.reusable_tokens for r in results)
        self.ttfts = sorted(t for r in results for t in r.ttfts)
        self.after = sorted(t for r in results for t in r.after)
        self.balance = max(r.balance for r in results)
        # the seeds' windows pooled, as every other figure here, before comparing: one
        # seed's 10 s window of a few-shot workload falls under 90% of the same run's
        # with no preemption by chance (see docs/router.md)
        paired = [r for r in results if r.unpreempted]
        self.recovery = (
            recovery_paired(
                pooled([r.timeline for r in paired]),
                pooled([r.unpreempted for r in paired]),
                results[0].config.duration / 2.0,
                results[0].config.duration / 2.0 + REPLACEMENT,
            )
            if paired and len(paired) == len(results)
            else None
        )
        self.recovery_slowest = _slowest([r.recovery for r in results])  # each seed's own
        self.recovery_before = _slowest([r.recovery_before for r in results])

    @property
    def share(self) -> float:
        return self.cached / self.prompt if self.prompt else 0.0

    @property
    def ceiling(self) -> float:
        return self.reusable / self.prompt if self.prompt else 0.0

    @property
    def mean(self) -> float:
        return sum(self.ttfts) / len(self.ttfts) if self.ttfts else 0.0

    @property
    def p99(self) -> float:
        return _p99(self.ttfts)

    @property
    def p99_after(self) -> float:
        return _p99(self.after)


def _slowest(recoveries: Sequence[float | None]) -> float | None:
    """The slowest of the seeds' recoveries; None if any never recovered (or none ran)."""
    if not recoveries or any(x is None for x in recoveries):
        return None
    return max(x for x in recoveries if x is not None)


def _seconds(recovery: float | None) -> str:
    if recovery is None:
        return "-"
    return "not back" if math.isinf(recovery) else f"{recovery:.0f} s"


def _p99(ordered: Sequence[float]) -> float:
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else 0.0


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.llm_routing", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="chat and control, 4 replicas, 70%%")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(HELD_OUT))
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument(
        "--policies", nargs="+", default=list(POLICIES), choices=POLICIES + VARIANTS
    )
    parser.add_argument("--replicas", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--loads", type=float, nargs="+", default=[0.5, 0.7, 0.9])
    parser.add_argument("--duration", type=float, default=300.0, help="virtual seconds")
    args = parser.parse_args(argv)
    if args.quick:
        args.workloads, args.replicas, args.loads = ["chat", "control"], [4], [0.7]
        args.seeds, args.duration = args.seeds[:1], 200.0
    if any(n < 2 for n in args.replicas):
        parser.error(f"--replicas must be 2 or more (one is preempted), got {args.replicas}")
    if any(not 0.0 < x < 2.0 for x in args.loads):  # (NaN too)
        parser.error(f"--loads are shares of capacity between 0 and 2, got {args.loads}")
    if not math.isfinite(args.duration) or args.duration < 120.0:
        parser.error(
            f"--duration must be a finite number of virtual seconds, 120 or more "
            f"(a preemption and a recovery), got {args.duration:g}"
        )
    if "least_load" not in args.policies:
        args.policies = ["least_load", *args.policies]
    return args


def _ms(seconds: float) -> str:
    return f"{seconds * 1000.0:,.0f}"


def measure(args: argparse.Namespace) -> dict[tuple[str, int, float, str], Pooled]:
    out: dict[tuple[str, int, float, str], Pooled] = {}
    for workload in args.workloads:
        for replicas in args.replicas:
            for load in args.loads:
                for policy in args.policies:
                    results = [
                        run(Config(workload, policy, replicas, load, seed, args.duration))
                        for seed in args.seeds
                    ]
                    out[workload, replicas, load, policy] = Pooled(results)
    return out


def table(args: argparse.Namespace, data: dict[tuple[str, int, float, str], Pooled]) -> str:
    lines: list[str] = []
    for workload in args.workloads:
        lines += [
            f"\n### {workload}\n",
            "| replicas | load | policy | cached share | ceiling | vs least_load | mean TTFT ms "
            "| vs least_load | P99 TTFT ms | max/mean load | preempted: hit rate back after "
            "| slowest seed | (before: vs the minute before) | P99 TTFT ms in the minute after |",
            "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
            "| ---: | ---: |",
        ]
        for replicas in args.replicas:
            for load in args.loads:
                base = data[workload, replicas, load, "least_load"]
                for policy in args.policies:
                    p = data[workload, replicas, load, policy]
                    share = f"{p.share / base.share:.2f}x" if base.share else "-"
                    faster = f"{base.mean / p.mean:.2f}x" if p.mean else "-"
                    back = " | ".join(
                        _seconds(x) for x in (p.recovery, p.recovery_slowest, p.recovery_before)
                    )
                    name = f"**{policy}**" if policy == "cache_aware" else policy
                    lines.append(
                        f"| {replicas} | {load:.0%} | {name} | {p.share:.1%} | {p.ceiling:.1%} "
                        f"| {share} "
                        f"| {_ms(p.mean)} | {faster} | {_ms(p.p99)} | {p.balance:.2f} | {back} "
                        f"| {_ms(p.p99_after)} |"
                    )
    return "\n".join(lines)


def goals(args: argparse.Namespace, data: dict[tuple[str, int, float, str], Pooled]) -> str:
    """The issue's goals (set at 70% load), cache_aware against least_load, at each
    load run: 70% first, then the others for information."""
    if "cache_aware" not in args.policies:
        return ""
    loads = sorted(args.loads, key=lambda x: (abs(x - 0.7) > 1e-9, x))
    return "\n".join(_goals_at(args, data, load) for load in loads)


def _goals_at(
    args: argparse.Namespace, data: dict[tuple[str, int, float, str], Pooled], load: float
) -> str:
    issue = " (the issue's)" if abs(load - 0.7) <= 1e-9 else " (the same checks, for information)"
    lines = [f"\nGoals at {load:.0%} load{issue}, cache_aware against least_load:"]
    for workload in args.workloads:
        for replicas in args.replicas:
            ours = data[workload, replicas, load, "cache_aware"]
            base = data[workload, replicas, load, "least_load"]
            checks: list[tuple[str, bool]]
            if workload in SHARED:
                reach = ours.ceiling / max(base.share, 1e-9)
                out_of_reach = f" (any routing's ceiling {reach:.2f}x)" if reach < 2.0 else ""
                checks = [
                    (
                        f"cached share {ours.share / max(base.share, 1e-9):.2f}x >= 2x"
                        + out_of_reach,
                        ours.share >= 2.0 * base.share,
                    ),
                    (
                        f"mean TTFT {base.mean / ours.mean:.2f}x lower >= 2x",
                        base.mean >= 2.0 * ours.mean,
                    ),
                    (f"P99 TTFT {_ms(ours.p99)} <= {_ms(base.p99)} ms", ours.p99 <= base.p99),
                    (f"max/mean load {ours.balance:.2f} <= 1.25", ours.balance <= 1.25),
                ]
            else:
                # the control's goal is "no worse": within 5% of least_load, or faster
                checks = [
                    (
                        f"mean TTFT no more than 5% over ({ours.mean / base.mean - 1.0:+.1%})",
                        ours.mean <= 1.05 * base.mean,
                    ),
                    (
                        f"P99 TTFT no more than 5% over ({ours.p99 / base.p99 - 1.0:+.1%})",
                        ours.p99 <= 1.05 * base.p99,
                    ),
                ]
            if ours.recovery is not None or workload in SHARED:
                back = _seconds(ours.recovery)
                slowest = _seconds(ours.recovery_slowest)
                checks.append(
                    (
                        f"hit rate back in {back} <= 30 s (against the same runs without the "
                        f"preemption, seeds pooled: slowest seed {slowest}, "
                        f"{_seconds(ours.recovery_before)} against the minute before)",
                        ours.recovery is not None and ours.recovery <= 30.0,
                    )
                )
            text = "; ".join(f"{what} {'ok' if ok else 'MISSED'}" for what, ok in checks)
            lines.append(f"- {workload}, {replicas} replicas: {text}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = _args(argv)
    started = time.process_time()
    data = measure(args)
    print(
        f"LLM routing, simulated replicas; seeds {' '.join(map(str, args.seeds))}; "
        f"{args.duration:g} virtual s per run; load = share of capacity with nothing cached"
    )
    print(table(args, data))
    print(goals(args, data))
    print(f"\n({time.process_time() - started:.0f} s of CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
