"""Every placement policy on both real traces at N = 4 (default cold start).

Writes ``benchmarks/results/policies.md`` and prints it. Run from the repo root:
``python benchmarks/policies.py``. Takes about a minute and a half.

Starts with a summary: SkyHedge against SpotHedge at the same spare count,
with and without notices, on both traces and on each half of each trace
(availability with N ready and with at least one ready, cost over the lower
bound; "yes" where SkyHedge is at least as available on both counts at no
more cost). Then a Pareto view: for each SpotHedge point (0, 1, 2 spares,
whole traces), the cheapest SkyHedge point (0, 1, 2 spares) at least as
available on both counts at no more cost. Then the full tables: the
baselines, SkyServe's SpotHedge exactly as SkyServe users enable it
(``spot_placer: dynamic_fallback`` + ``dynamic_ondemand_fallback: true``) with
``num_overprovision`` 0, 1 and 2, and our SkyHedge with 0, 1 and 2; the same
with the cloud's interruption notice (AWS 120 s, GCP 30 s); SkyHedge's
ablations and trade-off curve. One parameter set for everything: nothing is
tuned per trace.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policies import registry
from policies.skyhedge import Params, make_skyhedge
from skyctl.sim import SimConfig, SimResult, format_table, simulate
from skyctl.spec import ServiceSpec
from skyctl.spec_yaml import parse_spec
from skyctl.traces import load_trace

N = 4
TRACES = {"aws-v100-2023-02": 120.0, "gcp-h100-2025-10": 30.0}  # name -> notice seconds
OUT = Path(__file__).parent / "results" / "policies.md"


def spec(extra: str = "") -> ServiceSpec:
    text = f"""
name: bench
resources:
  accelerators: V100:1
  use_spot: true
service:
  readiness_probe: /
  replica_policy:
    min_replicas: {N}
    max_replicas: {N}
{extra}
run: python -m http.server $PORT
"""
    return parse_spec(text, source="benchmark")


HEDGE = "    spot_placer: dynamic_fallback\n    dynamic_ondemand_fallback: true\n"
MAIN = [
    ("ondemand_only", "ondemand_only", spec()),
    ("cheapest_spot", "cheapest_spot", spec()),
    ("round_robin_spot", "round_robin_spot", spec()),
    ("spothedge", "spothedge", spec(HEDGE)),
    ("spothedge +1", "spothedge", spec(HEDGE + "    num_overprovision: 1\n")),
    ("skyhedge", "skyhedge", spec()),
    ("skyhedge +1", "skyhedge", spec("    num_overprovision: 1\n")),
]
# the Pareto view adds two spares to both
PLUS2 = [
    ("spothedge +2", "spothedge", spec(HEDGE + "    num_overprovision: 2\n")),
    ("skyhedge +2", "skyhedge", spec("    num_overprovision: 2\n")),
]
CURVE = {
    "skyhedge (its defaults)": Params(),
    "  without the on-demand floor": Params(od_floor=False),
    "  without the young-zone floor": Params(floor_young=0),
    "  without rebalancing": Params(rebalance=False),
    "  without anchors (v2: home zone only)": Params(anchor_every=0, premium=1e9),
    "  anchor premium 1.5": Params(premium=1.5),
    "skyhedge spare=1": Params(spare=1),
    "  spare=1, spread spares (v2)": Params(spare=1, spread_spares=True),
    "  spare=1, +volatile spare": Params(spare=1, volatile_preemptions=1),
    "  spare=1, zone-tolerant": Params(spare=1, tolerant_spares=1),
    "skyhedge spare=2": Params(spare=2),
    "  spare=2, home zone (no zone-tolerant spares)": Params(spare=2, tolerant_spares=0),
}
_RUNS: dict[tuple[str, str, float, int], SimResult] = {}


def run(
    label: str, policy: str, s: ServiceSpec, trace_name: str, notice: float, half: int = 0
) -> SimResult:
    key = (label, trace_name, notice, half)  # a label names one policy and spec
    if key not in _RUNS:
        trace = load_trace(trace_name)
        mid = trace.ticks // 2
        start, ticks = {0: (0, None), 1: (0, mid), 2: (mid, None)}[half]
        config = SimConfig(policy=policy, notice_seconds=notice, start_tick=start, ticks=ticks)
        _RUNS[key] = replace(simulate(s, trace, config), policy=label)
    return _RUNS[key]


def _cell(r: SimResult) -> str:
    return f"{r.availability:.3%} / {r.availability_any:.3%} / {r.cost_over_bound:.2f}x"


def summary() -> str:
    """SkyHedge vs SpotHedge at equal spares: every trace, notice and half."""
    lines = [
        "| trace | notice | spares | SpotHedge | SkyHedge | at least as good |",
        "|---|---|---|---|---|---|",
    ]
    for trace_name, notice_s in TRACES.items():
        for half in (0, 1, 2):
            for notice in (0.0, notice_s):
                for spare, (hedge, ours) in enumerate((MAIN[3:6:2], MAIN[4:7:2])):
                    a = run(hedge[0], hedge[1], hedge[2], trace_name, notice, half)
                    b = run(ours[0], ours[1], ours[2], trace_name, notice, half)
                    ok = _covers(b, a)
                    where = trace_name + ("" if half == 0 else f", half {half}")
                    lines.append(
                        f"| {where} | {notice:g} s | {spare} | {_cell(a)} | {_cell(b)} "
                        f"| {'yes' if ok else 'no'} |"
                    )
    return "\n".join(lines)


def _covers(b: SimResult, a: SimResult) -> bool:
    """``b`` at least as available as ``a`` on both counts, at no more cost."""
    return (
        b.availability >= a.availability
        and b.availability_any >= a.availability_any
        and b.cost <= a.cost
    )


def dominance() -> str:
    """Per SpotHedge point (0, 1, 2 spares): the cheapest SkyHedge point (0, 1,
    2 spares) at least as available on both counts at no more cost."""
    hedges = [MAIN[3], MAIN[4], PLUS2[0]]
    ours = [MAIN[5], MAIN[6], PLUS2[1]]
    lines = [
        "| trace | notice | SpotHedge spares | SpotHedge | SkyHedge spares | SkyHedge |",
        "|---|---|---|---|---|---|",
    ]
    for trace_name, notice_s in TRACES.items():
        for notice in (0.0, notice_s):
            mine = [run(lb, pol, s, trace_name, notice) for lb, pol, s in ours]
            for k, (lb, pol, s) in enumerate(hedges):
                a = run(lb, pol, s, trace_name, notice)
                found = sorted((b for b in mine if _covers(b, a)), key=lambda b: b.cost)
                best = f"+{mine.index(found[0])} | {_cell(found[0])}" if found else "none |"
                lines.append(f"| {trace_name} | {notice:g} s | +{k} | {_cell(a)} | {best} |")
    return "\n".join(lines)


def main() -> None:
    # no options; --help says what it does instead of running it
    argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0]).parse_args()
    for label, params in CURVE.items():
        registry.POLICIES[label] = make_skyhedge(params)
    started = time.perf_counter()
    parts = [
        "# Placement policies on real spot traces\n",
        f"N = {N} replicas, cold start 180 s (spot and on-demand). "
        "Generated by `python benchmarks/policies.py`.\n",
        "## Summary: SkyHedge against SpotHedge at equal spares\n",
        "Each cell: availability with N ready / with at least one ready / cost over "
        "the lower bound. Halves: the first and second half of the trace alone.\n",
        summary() + "\n",
        "## Pareto view: does SkyHedge, at any spare count, match each SpotHedge point?\n",
        "For each SpotHedge point, the cheapest SkyHedge point (0, 1 or 2 spares) with "
        "at least its availability with N ready and with one ready at no more cost "
        "(whole traces; cells as above; none: no such point).\n",
        dominance() + "\n",
    ]
    for trace_name, notice in TRACES.items():
        main_rows = [run(lb, pol, s, trace_name, 0.0) for lb, pol, s in MAIN + PLUS2]
        parts.append(f"## {trace_name}, no interruption notice\n")
        parts.append(format_table(main_rows, markdown=True) + "\n")
        notice_rows = [run(lb, pol, s, trace_name, notice) for lb, pol, s in MAIN[3:] + PLUS2]
        parts.append(f"## {trace_name}, with a {notice:g} s interruption notice\n")
        parts.append(format_table(notice_rows, markdown=True) + "\n")
        curve = [run(lb, lb, spec(), trace_name, 0.0) for lb in CURVE]
        parts.append(f"## {trace_name}, SkyHedge ablations and trade-off (no notice)\n")
        parts.append(format_table(curve, markdown=True) + "\n")
    parts.append(f"Total replay time: {time.perf_counter() - started:.1f} s.\n")
    text = "\n".join(parts)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
