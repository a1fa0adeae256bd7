"""Time to first ready replica, and from a preemption to its replacement being ready.

Runs the real CLI and controller daemon on the local provider with the bundled
AWS V100 trace replayed at one tick per second, for ``--seconds`` seconds, and
reads the service's event log. Prints the figures; asserts nothing.

    python benchmarks/local_timings.py [--seconds 60] [--spec manifests/spot-local-trace.yaml]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers.cli import run_cli  # noqa: E402  (after the path is set)


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(home, *args, timeout=300)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--spec", default=str(ROOT / "manifests" / "spot-local-trace.yaml"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        t0 = time.monotonic()
        up = cli(home, "serve", "up", args.spec, "--timeout", "120")
        first_ready = time.monotonic() - t0
        if up.returncode != 0:
            sys.exit(up.stdout + up.stderr)
        name = json.loads(cli(home, "serve", "status", "-o", "json").stdout)[0]["name"]
        time.sleep(args.seconds)
        client_env = {**os.environ, "SKYCTL_HOME": str(home)}
        os.environ.update(client_env)
        from skyctl.client import ControllerClient
        from skyctl.config import paths

        client = ControllerClient.find(paths(home))
        assert client is not None
        events = client.call("GET", f"/v1/services/{name}/events?limit=5000")
        cli(home, "serve", "down", name)

    launched_at = {e["replica"]: e["at"] for e in events if e["kind"] == "launch"}
    ready_at = {e["replica"]: e["at"] for e in events if e["kind"] == "ready"}
    notices = {e["replica"]: e["at"] for e in events if e["kind"] == "notice"}
    gaps_kill, gaps_notice = [], []
    for e in events:
        if e["kind"] != "preempted":
            continue
        start = notices.get(e["replica"], e["at"])
        # the replacement: the first replica launched after the notice (or kill) that became ready
        later = sorted(
            (ready_at[r], r)
            for r, at in launched_at.items()
            if at >= start - 1e-6 and r in ready_at
        )
        if later:
            gaps_kill.append(later[0][0] - e["at"])
            gaps_notice.append(later[0][0] - start)
    print(
        f"time from `serve up` to first ready replica: {first_ready:.2f} s "
        "(includes starting the controller)"
    )
    print(
        f"preemptions observed: {len(gaps_kill)} in {args.seconds:.0f} s of replay "
        f"(1 trace tick per second)"
    )
    if gaps_kill:
        print(
            f"replacement ready after the kill: median {statistics.median(gaps_kill):+.2f} s, "
            f"max {max(gaps_kill):+.2f} s (negative: ready before the kill, thanks to the notice)"
        )
        print(
            f"replacement ready after the notice: median {statistics.median(gaps_notice):.2f} s, "
            f"max {max(gaps_notice):.2f} s"
        )


if __name__ == "__main__":
    main()
