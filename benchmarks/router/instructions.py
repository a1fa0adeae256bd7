"""Instructions per request of the router, counted by valgrind (callgrind).

``python -m benchmarks.router.instructions [--baseline DIR] [--policy least_load fan_out]
[--heads same varied]``

On a shared machine the router's CPU time per request moves by 10 to 20%
with the neighbours (caches, frequency, the other core's load), which hides
the 1 to 5% a change to the request path makes. The count of user-space
instructions does not move with them: this runs the router under callgrind
with counting switched off, switches it on only while wrk sends requests (8
connections; the router is about 50 times slower under valgrind), and
divides by the requests the router counted itself (its metrics). Repeated
runs agree within about 3% (the event loop's per-iteration work is shared by
however many requests arrived together). Kernel time (the socket calls) is not counted:
compare CPU per request from ``benchmarks.router.run`` for that.

Two workloads (:mod:`benchmarks.router.workloads`, ``--heads``, default
both): ``same``, wrk's byte-identical ``GET /`` (every head a hit of the
router's head cache), and ``varied``, LLM API requests (``POST`` with JSON
bodies of varying length, a unique ``X-Request-Id`` each, and a unique reply
head each): no head is seen twice, as in real traffic. Read goals against
``varied``; the gap between the two rows is what the head cache is worth.

``--keep DIR`` copies callgrind's output files there, for
``callgrind_annotate --inclusive=yes FILE`` (where the instructions go).

Needs the Debian packages valgrind, wrk and nginx. ``--baseline DIR``: the
router of another source tree (``git archive COMMIT | tar -x -C DIR``),
counted the same way.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from benchmarks.router import workloads
from benchmarks.router.run import ROOT, nginx_conf, process, wrk

BACKEND_PORT = 18190


def _requests(url: str) -> float:
    """Client requests the router has counted (its metrics)."""
    with urllib.request.urlopen(url + "-/skyctl/metrics", timeout=60) as resp:
        text = resp.read().decode()
    found = re.search(r"^skyctl_router_requests_total\{[^}]*\} (\S+)$", text, re.M)
    if found is None:
        raise RuntimeError("the router's metrics have no skyctl_router_requests_total")
    return float(found.group(1))


def _total(out: Path) -> int:
    """The instructions callgrind counted (``summary:``/``totals:`` of its dumps)."""
    totals = [
        int(line.split()[1])
        for dump in out.parent.glob(out.name + "*")
        for line in dump.read_text().splitlines()
        if line.startswith(("summary:", "totals:"))
    ]
    if not totals:
        raise RuntimeError(f"no instruction total in {out}*")
    return max(totals)


def _instrument(pid: int, state: str) -> None:
    subprocess.run(["callgrind_control", "-i", state, str(pid)], check=True, capture_output=True)


def count(
    tree: Path, policy: str, backend: str, seconds: int, tmp: Path, heads: str
) -> tuple[float, float]:
    """(instructions per request, requests counted) for ``tree``'s router on a workload."""
    out = tmp / f"callgrind.{policy}.{heads}.{abs(hash(tree))}"
    script = workloads.script(tmp, heads)
    backends = ",".join([backend] * (2 if policy == "fan_out" else 1))
    argv = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "benchmarks.router.serve",
        "--policy",
        policy,
        "--backends",
        backends,
    ]
    with process(argv, wait_for="PORT", cwd=tree) as (proc, line):
        url = f"http://127.0.0.1:{line.split()[1]}/"
        wrk(url, 2, 8, script)  # warm up: connection pools, first-call paths
        before = _requests(url)
        _instrument(proc.pid, "on")
        wrk(url, seconds, 8, script)
        _instrument(proc.pid, "off")
        requests = _requests(url) - before
    return _total(out) / max(1.0, requests), requests


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--policy", nargs="+", default=["least_load", "fan_out"])
    parser.add_argument(
        "--heads",
        nargs="+",
        choices=workloads.HEADS,
        default=list(workloads.HEADS),
        help="workloads: byte-identical GETs, varied LLM API requests (default both)",
    )
    parser.add_argument("--seconds", type=int, default=5, help="wrk run per count (default 5)")
    parser.add_argument("--baseline", type=Path, default=None, help="another source tree")
    parser.add_argument(
        "--keep", type=Path, default=None, help="copy callgrind's output files to this directory"
    )
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control", "wrk", "nginx"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install -y valgrind wrk nginx")
    if args.baseline is not None and not (args.baseline / "benchmarks/router/serve.py").is_file():
        parser.error(f"--baseline {args.baseline}: not a source tree with benchmarks/router/")
    trees = [("this tree", ROOT)] + ([("baseline", args.baseline)] if args.baseline else [])
    with tempfile.TemporaryDirectory(prefix="skyctl-router-instr-") as name:
        tmp = Path(name)
        conf = nginx_conf(tmp, workloads.backend_server(BACKEND_PORT))
        with process(["nginx", "-c", str(conf), "-p", str(tmp)]):
            backend = f"http://127.0.0.1:{BACKEND_PORT}"
            print(f"{'router':32} {'heads':>7} {'instructions/request':>21} {'requests':>9}")
            for policy in args.policy:
                for heads in args.heads:
                    for label, tree in trees:
                        per, requests = count(
                            tree.resolve(), policy, backend, args.seconds, tmp, heads
                        )
                        print(
                            f"{policy + ', ' + label:32} {heads:>7} {per:21,.0f} {requests:9.0f}",
                            flush=True,
                        )
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            for dump in tmp.glob("callgrind.*"):
                shutil.copy(dump, args.keep / dump.name)


if __name__ == "__main__":
    main()
