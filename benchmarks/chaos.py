"""Chaos under load, long form: client traffic through the router while replicas die.

Same harness as ``tests/test_chaos.py`` (``tests/helpers/chaos.py``): a spot
service on the local provider with seeded random preemptions (each announced
``--notice`` seconds ahead), GETs and a share of POSTs from ``--concurrency``
loopback clients for ``--seconds`` (at most ``--max-requests``). Prints, per
seed: requests sent and failed by method, POSTs that failed yet were executed
and POSTs executed twice (from the replicas' ledger), the share of seconds the
router had a ready replica, and the preemptions.

    python benchmarks/chaos.py --seconds 60 --seeds 1 2 3 --rate 360
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers.chaos import run_chaos
from tests.helpers.processes import kill_leftovers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--rate", type=float, default=360.0, help="preemptions/hour/replica")
    parser.add_argument("--notice", type=float, default=1.0, help="seconds of notice")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--post-share", type=float, default=0.2)
    parser.add_argument("--post-ms", type=int, default=50, help="work time of one POST")
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    args = parser.parse_args()
    os.environ.setdefault("SKYCTL_LOG_LEVEL", "WARNING")
    totals: collections.Counter[str] = collections.Counter()
    for seed in args.seeds:
        home = Path(tempfile.mkdtemp(prefix="skyctl-chaos-")) / "home"
        home.mkdir(mode=0o700)
        try:
            result = asyncio.run(
                run_chaos(
                    home,
                    seed=seed,
                    seconds=args.seconds,
                    max_requests=args.max_requests,
                    concurrency=args.concurrency,
                    replicas=args.replicas,
                    rate=args.rate,
                    notice=args.notice,
                    post_share=args.post_share,
                    post_ms=args.post_ms,
                )
            )
        finally:
            kill_leftovers(home)
            shutil.rmtree(home.parent, ignore_errors=True)
        print(f"seed {seed}: {result.summary()}", flush=True)
        totals.update(
            {
                "GET sent": result.sent["GET"],
                "GET failed": result.failed["GET"],
                "POST sent": result.sent["POST"],
                "POST failed": result.failed["POST"],
                "POST failed but executed": result.failed_posts_executed,
                "POST executed twice": result.post_duplicates,
                "seconds": result.seconds_sampled,
                "seconds with a ready replica": result.seconds_ready,
                "preemptions": result.preemptions,
            }
        )
    share = totals["seconds with a ready replica"] / max(1, totals["seconds"])
    print("\ntotal: " + ", ".join(f"{k} {v}" for k, v in totals.items()))
    print(f"share of seconds with a ready replica: {100 * share:.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
