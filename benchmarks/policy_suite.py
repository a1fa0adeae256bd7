"""The policy suite: tune on one set of traces, report on others.

Run from the repo root: ``python -m benchmarks.policy_suite`` (full grid,
writes ``benchmarks/results/policy_suite.md`` and prints it), or ``--quick``
(a tiny grid, seconds; what the tests run). ``--workers`` (at most 2) runs
replays in parallel.

- **Tuning set**: the first half of the AWS V100 trace, and one seed of every
  synthetic family. The knob of ``skyhedge_online`` (``risk_price``) is chosen
  here: the cheapest candidate whose N-ready availability is at least
  SpotHedge's on every tuning scenario (else the one with the fewest misses).
- **Held-out set**, never seen while tuning: the second half of the AWS trace
  (split by time), the GCP H100 trace (by cloud), the 3-zone multinode AWS
  traces with capacity caps (by zone count), and other seeds of every
  synthetic family.
- Every trace is replayed at N in {2, 4, 8, 16}, cold starts {60, 180, 600} s,
  without and with the cloud's notice (AWS and synthetic 120 s, GCP 30 s).

Printed per policy over the held-out set: N-ready and at-least-one
availability, cost over the lower bound and over on-demand, the Pareto
comparison against SpotHedge (dominates / dominated / trade-off / equal, per
scenario), and the scenarios where it is dominated; then, per held-out trace
and N, the default against SpotHedge; then SkyServe's own setup (3 replicas +
1 spare, 120 s cold start, 24 h windows, on-demand = 3x spot).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import multiprocessing
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policies import registry
from policies.skyhedge_online import Params, make
from skyctl.sim import SimConfig, simulate
from skyctl.sim.synthetic import FAMILIES, synthetic_trace
from skyctl.spec import ServiceSpec
from skyctl.spec_yaml import parse_spec
from skyctl.traces import Trace, load_trace

OUT = Path(__file__).parent / "results" / "policy_suite.md"
AWS = "aws-v100-2023-02"
GCP = "gcp-h100-2025-10"
MULTI16 = "aws-v100-multinode-2023-08/16-nodes"
MULTI4 = "aws-v100-multinode-2023-08/4-nodes-real-preemption"
NOTICE = {"aws": 120.0, "gcp": 30.0, "syn": 120.0}
KNOBS = (1.0, 4.0, 16.0)  # risk_price candidates
PEER = "spothedge"
DEFAULT = "skyhedge_online"
FLOOR: list[float | None] = [None]  # --floor: skyhedge_online's floor_p for every knob


@dataclass(frozen=True)
class Grid:
    tune: tuple[str, ...]  # trace keys
    held: tuple[str, ...]
    tune_ns: tuple[int, ...]  # the tuning grid (smaller: it runs once per knob)
    tune_colds: tuple[float, ...]
    knob_ns: tuple[int, ...]  # where the other knob settings are reported (smaller)
    knob_colds: tuple[float, ...]
    ns: tuple[int, ...]
    colds: tuple[float, ...]
    notices: tuple[bool, ...]
    knobs: tuple[float, ...]
    skyserve: bool  # run SkyServe's setup too


def full_grid() -> Grid:
    return Grid(
        tune=(f"real:{AWS}#h1", *(f"syn:{f}:0" for f in FAMILIES)),
        held=(
            f"real:{AWS}#h2",
            f"real:{GCP}",
            f"real:{MULTI16}",
            f"real:{MULTI4}",
            *(f"syn:{f}:1" for f in FAMILIES),
        ),
        tune_ns=(2, 8),
        tune_colds=(60.0, 600.0),
        knob_ns=(4,),
        knob_colds=(180.0,),
        ns=(2, 4, 8, 16),
        colds=(60.0, 180.0, 600.0),
        notices=(False, True),
        knobs=KNOBS,
        skyserve=True,
    )


def quick_grid() -> Grid:
    return Grid(
        tune=("syn:independent:0@288",),
        held=("syn:regional:1@288", "syn:caps:1@288"),
        tune_ns=(2,),
        tune_colds=(180.0,),
        knob_ns=(2,),
        knob_colds=(180.0,),
        ns=(2,),
        colds=(180.0,),
        notices=(False, True),
        knobs=(1.0, 4.0),
        skyserve=False,
    )


# ---------------------------------------------------------------- traces and specs


@functools.cache
def trace_for(key: str) -> Trace:
    """``real:NAME[#h1|#h2]`` (a bundled trace or one of its halves) or
    ``syn:FAMILY:SEED[@TICKS]``."""
    kind, _, rest = key.partition(":")
    if kind == "syn":
        body, _, ticks = rest.partition("@")
        family, _, seed = body.partition(":")
        return synthetic_trace(family, int(seed), ticks=int(ticks or 1008))
    name, _, half = rest.partition("#")
    trace = load_trace(name)
    mid = trace.ticks // 2
    if half == "h1":
        return replace(trace.window(0, mid), name=f"{trace.name} (1st half)")
    if half == "h2":
        return replace(trace.window(mid, trace.ticks - mid), name=f"{trace.name} (2nd half)")
    return trace


def cloud_of(key: str) -> str:
    return "syn" if key.startswith("syn:") else key.split(":", 1)[1][:3]


def spec_for(n: int, peer: bool, spares: int = 0) -> ServiceSpec:
    extra = (
        "    spot_placer: dynamic_fallback\n    dynamic_ondemand_fallback: true\n" if peer else ""
    )
    if spares:
        extra += f"    num_overprovision: {spares}\n"
    text = (
        "name: suite\nresources:\n  accelerators: V100:1\n  use_spot: true\n"
        "service:\n  readiness_probe: /\n  replica_policy:\n"
        f"    min_replicas: {n}\n    max_replicas: {n}\n{extra}run: serve\n"
    )
    return parse_spec(text, source="policy_suite")


# ---------------------------------------------------------------- one replay


@dataclass(frozen=True)
class Job:
    policy: str  # a label: "spothedge", "skyhedge", "skyhedge_online@4"
    trace: str  # a trace key
    n: int
    cold: float
    notice: bool
    start_tick: int = 0
    ticks: int | None = None
    spares: int = 0
    skyserve: bool = False  # spot = on-demand / 3 everywhere


def _policy(label: str) -> str:
    if "@" in label:
        if label not in registry.POLICIES:
            knob = float(label.split("@")[1])
            registry.POLICIES[label] = make(Params(risk_price=knob, floor_p=FLOOR[0]))
    return label


@functools.cache
def _skyserve_trace(key: str) -> Trace:
    """SkyServe's setup: every zone's spot price a third of on-demand."""
    tr = trace_for(key)
    zones = tuple(replace(z, spot_price=tr.ondemand_price / 3.0) for z in tr.zones)
    return replace(tr, zones=zones)


def run_job(job: Job) -> tuple[Job, dict[str, float]]:
    trace = _skyserve_trace(job.trace) if job.skyserve else trace_for(job.trace)
    config = SimConfig(
        policy=_policy(job.policy),
        spot_cold_start=job.cold,
        ondemand_cold_start=job.cold,
        notice_seconds=NOTICE[cloud_of(job.trace)] if job.notice else 0.0,
        start_tick=job.start_tick,
        ticks=job.ticks,
    )
    r = simulate(spec_for(job.n, job.policy == PEER, job.spares), trace, config)
    return job, {
        "avail_n": r.availability,
        "avail_1": r.availability_any,
        "cost": r.cost,
        "bound": r.lower_bound,
        "od": r.ondemand_cost,
        "hours": r.hours,
    }


def run_all(jobs: Sequence[Job], workers: int) -> dict[Job, dict[str, float]]:
    # longest first, so the pool does not end on one long replay
    order = sorted(jobs, key=lambda j: -(trace_for(j.trace).ticks * (1 + j.n / 8)))
    out: dict[Job, dict[str, float]] = {}
    step = max(1, len(order) // 10)
    if workers <= 1:
        results = map(run_job, order)
        for job, r in results:
            out[job] = r
        return out
    with multiprocessing.get_context("fork").Pool(min(2, workers)) as pool:
        for job, r in pool.imap_unordered(run_job, order, chunksize=1):
            out[job] = r
            if len(out) % step == 0:
                print(f"  {len(out)} / {len(order)} replays", file=sys.stderr, flush=True)
    return out


# ---------------------------------------------------------------- comparison


Scenario = tuple[str, int, float, bool]  # trace key, N, cold start, notice


def scenarios(
    keys: Sequence[str],
    grid: Grid,
    ns: Sequence[int] | None = None,
    colds: Sequence[float] | None = None,
) -> list[Scenario]:
    return [
        (k, n, c, nt)
        for k in keys
        for n in (ns or grid.ns)
        for c in (colds or grid.colds)
        for nt in grid.notices
    ]


def tuning_scenarios(grid: Grid) -> list[Scenario]:
    return scenarios(grid.tune, grid, grid.tune_ns, grid.tune_colds)


def pareto(a: dict[str, float], peer: dict[str, float]) -> str:
    """``a`` against the peer on (N ready, at least one ready, -cost)."""
    eps = 1e-9
    mine = (a["avail_n"], a["avail_1"], -a["cost"])
    theirs = (peer["avail_n"], peer["avail_1"], -peer["cost"])
    ge = all(x >= y - eps for x, y in zip(mine, theirs, strict=True))
    le = all(x <= y + eps for x, y in zip(mine, theirs, strict=True))
    if ge and le:
        return "equal"
    if ge:
        return "dominates"
    if le:
        return "dominated"
    return "trade-off"


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def label_of(key: str, n: int, cold: float, notice: bool) -> str:
    return f"{trace_for(key).name}, N={n}, cold {cold:g} s, {'notice' if notice else 'no notice'}"


def choose_knob(results: dict[Job, dict[str, float]], grid: Grid) -> tuple[float, list[str]]:
    """The cheapest knob at least as available (N ready) as SpotHedge on every
    tuning scenario; else the fewest misses, then the cheapest."""
    rows = ["| risk_price | misses vs SpotHedge (N ready) | mean N ready | mean cost / bound |"]
    rows.append("|---|---|---|---|")
    best: tuple[int, float, float] | None = None
    chosen = grid.knobs[0]
    for knob in grid.knobs:
        misses = 0
        avail, ratio = [], []
        for k, n, c, nt in tuning_scenarios(grid):
            mine = results[Job(f"{DEFAULT}@{knob:g}", k, n, c, nt)]
            peer = results[Job(PEER, k, n, c, nt)]
            misses += mine["avail_n"] < peer["avail_n"] - 1e-9
            avail.append(mine["avail_n"])
            ratio.append(mine["cost"] / mine["bound"])
        total = len(avail)
        rows.append(f"| {knob:g} | {misses} / {total} | {_mean(avail):.3%} | {_mean(ratio):.2f}x |")
        score = (misses, _mean(ratio), knob)
        if best is None or score < best:
            best, chosen = score, knob
    return chosen, rows


def summary(
    results: dict[Job, dict[str, float]], policies: Sequence[str], cases: Sequence[Scenario]
) -> list[str]:
    out = [
        "| policy | N ready | >= 1 ready | cost / bound | cost / on-demand | worst N-ready "
        "margin vs SpotHedge | below SpotHedge (N ready) | dominates / dominated / "
        "trade-off / equal |",
        "|---|---|---|---|---|---|---|---|",
    ]
    dominated: dict[str, list[str]] = {}
    for pol in policies:
        rows = []
        margin = math.inf
        below = 0
        tally = {"dominates": 0, "dominated": 0, "trade-off": 0, "equal": 0}
        for k, n, c, nt in cases:
            r = results[Job(pol, k, n, c, nt)]
            peer = results[Job(PEER, k, n, c, nt)]
            rows.append(r)
            margin = min(margin, r["avail_n"] - peer["avail_n"])
            below += r["avail_n"] < peer["avail_n"] - 1e-9
            verdict = pareto(r, peer)
            tally[verdict] += 1
            if verdict == "dominated" and pol != PEER:
                dominated.setdefault(pol, []).append(
                    f"{label_of(k, n, c, nt)}: {_cell(r)} vs {_cell(peer)}"
                )
        out.append(
            f"| {pol} | {_mean([r['avail_n'] for r in rows]):.3%} "
            f"| {_mean([r['avail_1'] for r in rows]):.3%} "
            f"| {_mean([r['cost'] / r['bound'] for r in rows]):.2f}x "
            f"| {_mean([r['cost'] / r['od'] for r in rows]):.1%} "
            f"| {margin * 100:+.3f} points | {below} / {len(rows)} "
            f"| {tally['dominates']} / {tally['dominated']} / {tally['trade-off']} "
            f"/ {tally['equal']} |"
        )
    out.append("")
    for pol, lines in dominated.items():
        out.append(f"Where `{pol}` is dominated by SpotHedge ({len(lines)}):\n")
        out += [f"- {line}" for line in lines[:25]]
        if len(lines) > 25:
            out.append(f"- ... and {len(lines) - 25} more")
        out.append("")
    return out


def _knob(label: str) -> float:
    return float(label.split("@")[1])


def _cell(r: dict[str, float]) -> str:
    return f"{r['avail_n']:.3%} / {r['avail_1']:.3%} / {r['cost'] / r['bound']:.2f}x"


def per_trace(
    results: dict[Job, dict[str, float]], policy: str, keys: Sequence[str], grid: Grid
) -> list[str]:
    """Per held-out trace and N, over cold starts and notices: the policy against SpotHedge."""
    out = [
        "| trace | N | SpotHedge N ready (mean) | default N ready (mean) | worst margin "
        "| SpotHedge >= 1 | default >= 1 | SpotHedge cost / bound | default cost / bound |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for k in keys:
        for n in grid.ns:
            mine, peer = [], []
            for c in grid.colds:
                for nt in grid.notices:
                    mine.append(results[Job(policy, k, n, c, nt)])
                    peer.append(results[Job(PEER, k, n, c, nt)])
            margin = min(a["avail_n"] - b["avail_n"] for a, b in zip(mine, peer, strict=True))
            out.append(
                f"| {trace_for(k).name} | {n} | {_mean([r['avail_n'] for r in peer]):.3%} "
                f"| {_mean([r['avail_n'] for r in mine]):.3%} | {margin * 100:+.3f} points "
                f"| {_mean([r['avail_1'] for r in peer]):.3%} "
                f"| {_mean([r['avail_1'] for r in mine]):.3%} "
                f"| {_mean([r['cost'] / r['bound'] for r in peer]):.2f}x "
                f"| {_mean([r['cost'] / r['bound'] for r in mine]):.2f}x |"
            )
    return out


# ---------------------------------------------------------------- SkyServe's setup


def skyserve_jobs(policies: Sequence[tuple[str, int]]) -> list[Job]:
    """3 replicas, 120 s cold start, every whole 24 h window of the three AWS traces."""
    jobs = []
    for name in (AWS, MULTI16, MULTI4):
        key = f"real:{name}"
        tr = trace_for(key)
        day = round(86400 / tr.gap_seconds)
        for w in range(tr.ticks // day):
            for pol, spares in policies:
                jobs.append(Job(pol, key, 3, 120.0, False, w * day, day, spares, True))
    return jobs


def skyserve_table(
    results: dict[Job, dict[str, float]], policies: Sequence[tuple[str, int]]
) -> list[str]:
    out = [
        "| trace | policy | windows | N ready | >= 1 ready | cost / on-demand | cost / bound |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in (AWS, MULTI16, MULTI4):
        for pol, spares in policies:
            rows = [
                r
                for j, r in results.items()
                if j.skyserve
                and j.trace == f"real:{name}"
                and (j.policy, j.spares) == (pol, spares)
            ]
            label = f"{pol} +{spares}" if spares else pol
            out.append(
                f"| {name} | {label} | {len(rows)} | {_mean([r['avail_n'] for r in rows]):.2%} "
                f"| {_mean([r['avail_1'] for r in rows]):.2%} "
                f"| {_mean([r['cost'] / r['od'] for r in rows]):.1%} "
                f"| {_mean([r['cost'] / r['bound'] for r in rows]):.2f}x |"
            )
    return out


# ---------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> str:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.policy_suite", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a tiny grid (seconds), for CI")
    ap.add_argument("--workers", type=int, default=2, help="parallel replays (at most 2)")
    ap.add_argument("--out", default=None, help=f"markdown output (default {OUT}; quick: none)")
    ap.add_argument("--json", default=None, help="also write every replay's figures here")
    ap.add_argument(
        "--floor",
        type=float,
        default=None,
        help="skyhedge_online's on-demand floor bound (Params.floor_p; default: none)",
    )
    args = ap.parse_args(argv)
    if not 1 <= args.workers <= 2:
        ap.error(f"--workers {args.workers}: allowed 1 or 2")
    grid = quick_grid() if args.quick else full_grid()
    FLOOR[0] = args.floor
    for label in [k for k in registry.POLICIES if k.startswith(f"{DEFAULT}@")]:
        del registry.POLICIES[label]  # made again with this run's floor
    started = time.perf_counter()
    candidates = [f"{DEFAULT}@{k:g}" for k in grid.knobs]

    tune_jobs = [
        Job(p, k, n, c, nt) for p in [PEER, *candidates] for k, n, c, nt in tuning_scenarios(grid)
    ]
    tuned = run_all(tune_jobs, args.workers)
    knob, knob_rows = choose_knob(tuned, grid)
    default = f"{DEFAULT}@{knob:g}"
    others = [c for c in candidates if c != default]
    held_policies = [PEER, "skyhedge", default]
    cases = scenarios(grid.held, grid)
    knob_cases = scenarios(grid.held, grid, grid.knob_ns, grid.knob_colds)
    held_jobs = [Job(p, *case) for p in held_policies for case in cases]
    held_jobs += [Job(p, *case) for p in others for case in knob_cases]
    ss_policies = [(PEER, 1), (default, 0), (default, 1)]
    if grid.skyserve:
        held_jobs += skyserve_jobs(ss_policies)
    held = run_all(held_jobs, args.workers)
    elapsed = time.perf_counter() - started

    lines = [
        "# Policy suite: tuned on one set, reported on another\n",
        f"Generated by `python -m benchmarks.policy_suite{' --quick' if args.quick else ''}"
        f"{f' --floor {args.floor:g}' if args.floor is not None else ''}` "
        f"({len(tune_jobs) + len(held_jobs)} replays, {elapsed:.0f} s with "
        f"{args.workers} worker(s)). Cells: N ready / at least one ready / cost over the "
        "lower bound; means are over scenarios.\n",
        f"Tuning set: {', '.join(trace_for(k).name for k in grid.tune)}, at N in "
        f"{list(grid.tune_ns)} and cold starts {[int(c) for c in grid.tune_colds]} s. "
        f"Held-out set: {', '.join(trace_for(k).name for k in grid.held)}, at N in "
        f"{list(grid.ns)} and cold starts {[int(c) for c in grid.colds]} s. Both without and "
        "with notices (AWS and synthetic 120 s, GCP 30 s).\n",
        "## Tuning: the knob of skyhedge_online\n",
        *knob_rows,
        "",
        f"Chosen: `risk_price = {knob:g}` (the default is `{default}`).\n",
        "## Held-out set, per policy\n",
        *summary(held, held_policies, cases),
        "## Held-out set: the knob\n",
        f"Every `risk_price` candidate on the held-out traces at N in {list(grid.knob_ns)}, "
        f"cold start {[int(c) for c in grid.knob_colds]} s, without and with notices.\n",
        *summary(held, [PEER, *sorted(candidates, key=_knob)], knob_cases),
        "## Held-out set, per trace and N: the default against SpotHedge\n",
        *per_trace(held, default, grid.held, grid),
        "",
    ]
    if grid.skyserve:
        lines += [
            "## SkyServe's setup (3 replicas + 1 spare, 120 s cold start, 24 h windows, "
            "on-demand = 3x spot)\n",
            "Every whole 24 h window of each trace, replayed alone; means over windows. "
            "SkyServe's artifact reports SpotHedge available 99-100% of the time at 45-58% "
            "of the on-demand cost on these three traces.\n",
            *skyserve_table(held, ss_policies),
            "",
        ]
    text = "\n".join(lines)
    if args.json:
        dump = [{**asdict(j), **r} for j, r in [*tuned.items(), *held.items()]]
        Path(args.json).write_text(json.dumps(dump, indent=0))
    out = args.out or (None if args.quick else str(OUT))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
