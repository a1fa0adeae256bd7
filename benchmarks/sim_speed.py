"""Replay speed: the whole 45-day, 9-zone AWS V100 trace through one policy.

Target: under 10 s on this machine. Run: ``python benchmarks/sim_speed.py
[POLICY] [--trace NAME|PATH] [--ondemand-price USD_PER_HOUR]`` (default
skyhedge on the bundled aws-v100-2023-02; any trace ``skyctl sim`` reads, see
docs/simulator.md "Trace formats"). Prints wall time, plan() calls and their
rate; a trace or policy that cannot be used is one line, ``error: ...``, exit 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skyctl.errors import SkyctlError
from skyctl.sim import SimConfig, simulate
from skyctl.spec import ReplicaPolicy, Resources, ServiceSection, ServiceSpec
from skyctl.traces import load_trace


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python benchmarks/sim_speed.py", description=__doc__)
    ap.add_argument("policy", nargs="?", default="skyhedge")
    ap.add_argument("--trace", default="aws-v100-2023-02", help="a bundled name or a path")
    ap.add_argument("--ondemand-price", type=float, default=None, help="for a trace without one")
    args = ap.parse_args(argv)
    try:
        run(args.policy, args.trace, args.ondemand_price)
    except SkyctlError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def run(policy: str, trace_name: str, ondemand_price: float | None) -> None:
    t0 = time.perf_counter()
    trace = load_trace(trace_name, ondemand_price=ondemand_price)
    loaded = time.perf_counter() - t0
    spec = ServiceSpec(
        name="speed",
        resources=Resources(use_spot=True),
        service=ServiceSection(replica_policy=ReplicaPolicy(min_replicas=4)),
    )
    t1 = time.perf_counter()
    r = simulate(spec, trace, SimConfig(policy=policy))
    wall = time.perf_counter() - t1
    print(
        f"{policy} on {trace.name}: {trace.ticks} ticks x {len(trace.zones)} zones "
        f"({r.hours / 24:.1f} days) replayed in {wall:.2f} s (trace load {loaded:.2f} s); "
        f"{r.plans} plan() calls, {r.plans / wall:,.0f}/s; "
        f"availability {r.availability:.3%}, {r.cost_over_bound:.2f}x the lower bound"
    )


if __name__ == "__main__":
    main()
