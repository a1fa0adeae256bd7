"""Replay speed: the whole 45-day, 9-zone AWS V100 trace through one policy.

Target: under 10 s on this machine. Run: ``python benchmarks/sim_speed.py
[POLICY]`` (default skyhedge). Prints wall time, plan() calls and their rate.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skyctl.sim import SimConfig, simulate
from skyctl.spec import ReplicaPolicy, Resources, ServiceSection, ServiceSpec
from skyctl.traces import load_trace


def main() -> None:
    policy = sys.argv[1] if len(sys.argv) > 1 else "skyhedge"
    t0 = time.perf_counter()
    trace = load_trace("aws-v100-2023-02")
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
