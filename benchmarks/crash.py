"""Crash-safety campaign, long form: SIGKILL the controller many times, check each restart.

Same harness as ``tests/test_crash_recovery.py`` (``tests/helpers/crash.py``),
with more kills and several seeds; prints one line per kill and a summary of
the kill points by what the store showed in progress (launches, terminations,
replicas starting, a rolling update, a preemption) when the controller died.

    python benchmarks/crash.py --kills 40 --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers.crash import run_campaign
from tests.helpers.processes import kill_leftovers


def report(seed: int, line: str) -> None:
    print(f"seed {seed}: {line}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="kills per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--max-delay", type=float, default=5.0, help="longest run before a kill")
    parser.add_argument("--rate", type=float, default=120.0, help="preemptions/hour/replica")
    args = parser.parse_args()
    os.environ.setdefault("SKYCTL_LOG_LEVEL", "WARNING")
    kinds: collections.Counter[str] = collections.Counter()
    steps: collections.Counter[str] = collections.Counter()
    recover: list[float] = []
    survived = 0
    failures = 0
    for seed in args.seeds:
        home = Path(tempfile.mkdtemp(prefix="skyctl-crash-")) / "home"
        home.mkdir(mode=0o700)
        try:
            result = asyncio.run(
                run_campaign(
                    home,
                    seed=seed,
                    kills=args.kills,
                    max_delay=args.max_delay,
                    rate=args.rate,
                    report=functools.partial(report, seed),
                )
            )
        except AssertionError as e:  # keep the home to look at
            failures += 1
            print(f"seed {seed}: FAILED: {e}\n  state kept in {home}", flush=True)
            continue
        finally:
            kill_leftovers(home)
        shutil.rmtree(home.parent, ignore_errors=True)
        survived += result.checks
        recover.extend(result.recover_seconds)
        for point in result.kills:
            kinds.update(point.kinds())
            steps[point.step] += 1
    print(
        f"\nkill points survived: {survived} (seeds {args.seeds}, {args.kills} kills each); "
        f"campaigns failed: {failures}"
    )
    print("in progress at the kill:", ", ".join(f"{k} {n}" for k, n in kinds.most_common()))
    print("scenario step at the kill:", ", ".join(f"{k} {n}" for k, n in steps.most_common()))
    if not recover:
        return 1
    print(
        f"restart to converged: median {statistics.median(recover):.1f}s, max {max(recover):.1f}s"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
