"""The shipped spot manifests on held-out traces: launch attempts, availability, cost.

Run from the repo root: ``python -m benchmarks.policy_suite_shipped [--json FILE]
[--compare FILE]``. Replays ``manifests/spot-local-trace.yaml`` and
``manifests/skyserve-vllm.yaml`` (each by its own policy) over traces no
capacity rule was tuned on: the 48 generated traces of
``tests/test_sim_traces_unseen.py`` (4 formats x 1 or 30 zones x 6 patterns,
120 ticks), its three year-long ones, and the two multinode AWS traces (there
also with ``--policy skyhedge`` and ``skyhedge_online``). Prints, per group,
launch attempts (refused), mean availability and cost; ``--json`` keeps
every replay's figures, ``--compare`` an earlier ``--json`` file: per group
before -> after, and how many replays rose, fell or kept their availability.
docs/simulator-notes.md, "Covered asks wait longer", has a run (about 3 minutes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skyctl.sim import SimConfig, simulate
from skyctl.spec_yaml import load_spec_file
from skyctl.traces import load_trace
from tests.helpers import trace_gen as gen

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ("spot-local-trace", "skyserve-vllm")
PATTERNS = ("all", "never", "flap", "long", "regional", "random")
GAPS = {"aws": 195.0, "aws-noprices": 60.0, "gcp": 600.0, "counts": 300.0}
YEARS = (("aws", 3600.0, 24 * 366), ("gcp", 3600.0, 24 * 365), ("counts", 900.0, 4 * 24 * 365))
MULTINODE = (
    "aws-v100-multinode-2023-08/16-nodes",
    "aws-v100-multinode-2023-08/4-nodes-real-preemption",
)

Figures = dict[str, float]


def _replay(manifest: str, trace_path: str, policy: str | None = None) -> Figures:
    spec = load_spec_file(str(ROOT / "manifests" / f"{manifest}.yaml"))
    r = simulate(spec, load_trace(trace_path), SimConfig(policy=policy))
    return {
        "avail": r.availability,
        "cost": r.cost,
        "launches": r.launches,
        "refused": r.failed_launches,
        "preemptions": r.preemptions,
    }


def replay_all() -> dict[str, Figures]:
    """Every replay, keyed ``group|trace|manifest[|policy]``."""
    out: dict[str, Figures] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, gap in GAPS.items():
            for zones in (1, 30):
                for kind in PATTERNS:
                    where = Path(tmp) / f"{fmt}-{zones}-{kind}"
                    folder = gen.write(fmt, where, kind, zones, 120, gap)
                    for m in MANIFESTS:
                        out[f"generated|{fmt}-{zones}-{kind}|{m}"] = _replay(m, str(folder))
        for fmt, gap, ticks in YEARS:
            folder = gen.write(fmt, Path(tmp) / f"year-{fmt}", "random", 3, ticks, gap)
            for m in MANIFESTS:
                out[f"year-long|{fmt}|{m}"] = _replay(m, str(folder))
    for name in MULTINODE:
        for m in MANIFESTS:
            for policy in (None, "skyhedge_online", "skyhedge"):
                group = f"multinode {policy or 'own policy'}"
                out[f"{group}|{name}|{m}|{policy}"] = _replay(m, name, policy)
    return out


def groups(rows: dict[str, Figures]) -> dict[str, list[str]]:
    by: dict[str, list[str]] = defaultdict(list)
    for key in rows:
        parts = key.split("|")
        by[f"{parts[0]}, {parts[2]}"].append(key)
    return by


def _line(rows: dict[str, Figures], keys: list[str]) -> tuple[str, str, str]:
    n = len(keys)
    att = sum(int(rows[k]["launches"]) for k in keys)
    ref = sum(int(rows[k]["refused"]) for k in keys)
    avail = sum(rows[k]["avail"] for k in keys) / n
    cost = sum(rows[k]["cost"] for k in keys)
    return f"{att:,} ({ref:,})", f"{avail:.3%}", f"{cost:,.0f}"


def report(rows: dict[str, Figures], before: dict[str, Figures] | None) -> list[str]:
    if before is None:
        out = ["| traces, manifest | replays | attempts (refused) | mean avail | cost $ |"]
        out.append("|---|---|---|---|---|")
        for name, keys in groups(rows).items():
            att, avail, cost = _line(rows, keys)
            out.append(f"| {name} | {len(keys)} | {att} | {avail} | {cost} |")
        return out
    out = [
        "| traces, manifest | replays | attempts (refused) before -> after "
        "| mean avail before -> after | cost $ before -> after |",
        "|---|---|---|---|---|",
    ]
    for name, keys in groups(rows).items():
        keys = [k for k in keys if k in before]
        if not keys:
            continue
        b, a = _line(before, keys), _line(rows, keys)
        out.append(
            f"| {name} | {len(keys)} | {b[0]} -> {a[0]} | {b[1]} -> {a[1]} | {b[2]} -> {a[2]} |"
        )
    common = [k for k in rows if k in before]
    up = sum(rows[k]["avail"] > before[k]["avail"] + 1e-12 for k in common)
    down = sum(rows[k]["avail"] < before[k]["avail"] - 1e-12 for k in common)
    out.append("")
    out.append(
        f"Availability rose in {up} of {len(common)} replays, fell in {down}, "
        f"unchanged in {len(common) - up - down}."
    )
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.policy_suite_shipped")
    ap.add_argument("--json", default=None, help="write every replay's figures here")
    ap.add_argument("--compare", default=None, help="an earlier --json file: before -> after")
    args = ap.parse_args(argv)
    before = json.loads(Path(args.compare).read_text()) if args.compare else None
    rows = replay_all()
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, sort_keys=True))
    print("\n".join(report(rows, before)))


if __name__ == "__main__":
    main()
