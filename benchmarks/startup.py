"""CPU seconds (user + system) to start each kind of skyctl process.

    python -m benchmarks.startup [--runs 10] [--baseline DIR]

Rows, each the mean over ``--runs`` starts with a fresh throwaway SKYCTL_HOME:

- ``skyctl --help`` and ``skyctl serve status`` with no controller running;
- ``skyctl serve status`` and ``skyctl serve up -d`` against a running controller
  (started once by ``skyctl controller start``; each ``up`` is a new service of one
  local replica, all taken down at the end);
- the controller daemon as the supervisor runs it
  (``python -m skyctl.controller.daemon --router-process``), from exec until
  ``controller.json`` names it (it listens);
- the router process (``python -m skyctl.router.process``) until ``router.json``
  names it;
- the supervisor (``python -m skyctl.supervisor``): its own CPU until its warm
  spare controller started, and the whole tree (supervisor, controller, router
  process, spare) from its exit status (the children it reaped count) after
  SIGTERM.

A CLI's CPU is its exit's rusage; a daemon's is ``/proc/PID/stat`` (10 ms ticks)
when it is ready. ``--baseline DIR`` (another source tree, e.g. ``git archive``
of an older commit) measures that tree in the same rounds, side by side.
Asserts nothing: figures move by 10-20% with a shared machine's load. Where
PYTHONDONTWRITEBYTECODE is set and a tree has no ``__pycache__``, every start compiles
the modules it imports from source, and the figures include that (a third of a CLI's
CPU, a fifth of a daemon's; the test suite compiles the packages once,
``tests/conftest.py``): ``python -m compileall -q skyctl providers policies`` in each
tree first measures the imports alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")
SPEC = """\
service:
  readiness_probe: /
  replicas: 1
run: exec python3 -m http.server "$PORT" --bind 127.0.0.1
"""


def env(tree: Path, home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SKYCTL_HOME": str(home),
        "PYTHONPATH": str(tree),
        "SKYCTL_LOG_LEVEL": "ERROR",
    }


def cli_cpu(tree: Path, home: Path, *args: str) -> float:
    """One ``python -m skyctl ARGS``: its CPU seconds (it must succeed)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "skyctl", *args],
        cwd=tree,
        env=env(tree, home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"skyctl {' '.join(args)} in {tree}: exit {proc.returncode}: {err.decode()}")
    return usage.ru_utime + usage.ru_stime


def proc_cpu(pid: int) -> float:
    """CPU seconds a running process used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def names_pid(info: Path, pid: int) -> bool:
    try:
        return bool(json.loads(info.read_text())["pid"] == pid)
    except (OSError, ValueError, KeyError):
        return False


def wait_for(what: str, ready: Callable[[], bool], proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            sys.exit(f"{what}: not ready (exit {proc.poll()})")
        time.sleep(0.01)


def daemon_cpu(tree: Path, module: str, info: str, *args: str) -> float:
    """``python -m module ARGS`` in a fresh home: its CPU once ``info`` names it."""
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        proc = subprocess.Popen(
            [sys.executable, "-m", module, "--home", str(home), *args],
            cwd=tree,
            env=env(tree, home),
            stdin=subprocess.DEVNULL,
        )
        try:
            wait_for(module, lambda: names_pid(home / info, proc.pid), proc)
            return proc_cpu(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(c) for c in path.read_text().split()]
    except OSError:
        return []


def supervisor_cpu(tree: Path) -> tuple[float, float]:
    """The supervisor in a fresh home: its own CPU once its warm spare controller
    waits on stdin, and the whole tree's once it stopped (SIGTERM)."""
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        proc = subprocess.Popen(
            [sys.executable, "-m", "skyctl.supervisor", "--home", str(home)],
            cwd=tree,
            env=env(tree, home),
            stdin=subprocess.DEVNULL,
        )
        try:
            wait_for("supervisor", lambda: spare_waits(proc.pid, home), proc)
            own = proc_cpu(proc.pid)
        finally:
            proc.terminate()
        _, _, usage = os.wait4(proc.pid, 0)
        proc.returncode = 0
        return own, usage.ru_utime + usage.ru_stime


def spare_waits(pid: int, home: Path) -> bool:
    """Whether the supervisor's controller is up and its spare is done importing."""
    if not (home / "controller.json").exists():
        return False
    for child in children(pid):
        try:
            standby = b"--standby" in Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            if standby and proc_cpu(child) > 0.1:
                return _idle(child)
        except OSError:
            continue
    return False


def _idle(pid: int, seconds: float = 0.3) -> bool:
    """Whether a process used no CPU for ``seconds`` (done importing, waiting)."""
    before = proc_cpu(pid)
    time.sleep(seconds)
    return proc_cpu(pid) == before


Rows = dict[str, list[float]]


def measure_cli(tree: Path, rows: Rows, running: Path, i: int) -> None:
    """One round of the CLI rows; ``running``: a home with a running controller."""
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp)
        add(rows, "skyctl --help", cli_cpu(tree, empty, "--help"))
        add(rows, "skyctl serve status (no controller)", cli_cpu(tree, empty, "serve", "status"))
    add(rows, "skyctl serve status (controller up)", cli_cpu(tree, running, "serve", "status"))
    spec = str(running / "svc.yaml")
    up = cli_cpu(tree, running, "serve", "up", "-d", "-n", f"bench{i}", spec)
    add(rows, "skyctl serve up -d (controller up)", up)


def measure_daemons(tree: Path, rows: Rows) -> None:
    """One round of the daemon rows, each in a fresh home."""
    daemon = daemon_cpu(tree, "skyctl.controller.daemon", "controller.json", "--router-process")
    add(rows, "controller daemon, to listening", daemon)
    add(rows, "router process, to router.json", daemon_cpu(tree, ROUTER, "router.json"))
    own, whole = supervisor_cpu(tree)
    add(rows, "supervisor (own), to spare waiting", own)
    add(rows, "supervisor + controller + router + spare", whole)


ROUTER = "skyctl.router.process"


def add(rows: Rows, name: str, value: float) -> None:
    rows.setdefault(name, []).append(value)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.startup")
    parser.add_argument("--runs", type=int, default=10, help="starts per row (default 10)")
    parser.add_argument(
        "--baseline", type=Path, default=None, help="another source tree, measured alike"
    )
    args = parser.parse_args()
    # SIGTERM (and SIGINT, ignored in a background job) stop the run with its clean-up
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))
    if args.runs < 1:
        parser.error(f"--runs must be 1 or more, got {args.runs}")
    if args.baseline is not None and not (args.baseline / "skyctl" / "cli.py").is_file():
        parser.error(f"--baseline {args.baseline}: expected a source tree with skyctl/cli.py")
    trees = {"this tree": ROOT}
    if args.baseline is not None:
        trees = {"baseline": args.baseline.resolve(), **trees}
    results: dict[str, Rows] = {name: {} for name in trees}
    homes = {name: Path(tempfile.mkdtemp(prefix="skyctl-startup-")) for name in trees}
    try:
        for name, tree in trees.items():  # a running controller for the CLI rows
            (homes[name] / "svc.yaml").write_text(SPEC)
            cli_cpu(tree, homes[name], "controller", "start")
        for i in range(args.runs):  # the trees alternate: the same load for both
            print(f"round {i + 1} of {args.runs}", file=sys.stderr)
            for name, tree in trees.items():
                measure_cli(tree, results[name], homes[name], i)
                measure_daemons(tree, results[name])
    finally:
        for name, tree in trees.items():
            cli_cpu(tree, homes[name], "serve", "down", "--all", "-y")
            cli_cpu(tree, homes[name], "controller", "stop", "--all")
            shutil.rmtree(homes[name], ignore_errors=True)
    table(results, args.runs)


def table(results: dict[str, Rows], runs: int) -> None:
    names = list(results)
    first = results[names[0]]
    width = max(len(row) for row in first)
    print(f"CPU seconds (user + system), mean of {runs} starts")
    print(f"{'process':<{width}} | " + " | ".join(f"{n:>10}" for n in names))
    for row in first:
        cells = [statistics.mean(results[n][row]) for n in names]
        print(f"{row:<{width}} | " + " | ".join(f"{c:10.3f}" for c in cells))


if __name__ == "__main__":
    main()
