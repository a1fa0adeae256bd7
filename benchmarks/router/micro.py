"""Instructions per execution of a Python statement, counted by valgrind (callgrind).

``python -m benchmarks.router.micro --setup 'from skyctl.router import http1' STMT [STMT ...]``

``timeit`` on a shared machine moves by 10 to 30% with the neighbours; the
instruction count of a statement does not. Each statement runs ``--number``
times and twice as many times in two fresh interpreters under callgrind,
and the difference of the two totals divided by ``--number`` is printed:
start-up, imports and ``--setup`` cancel out. Run in the source tree
to measure (``PYTHONPATH`` or the working directory picks the router). For
pieces of the request path (a regex, a parse, a call); the whole path is
:mod:`benchmarks.router.instructions`. Needs the Debian package valgrind.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def total(setup: str, statement: str, number: int) -> int:
    """The instructions callgrind counts for ``setup`` then ``number`` runs of ``statement``."""
    code = f"{setup}\nfor _ in range({number}):\n    {statement}\n"
    with tempfile.TemporaryDirectory(prefix="skyctl-micro-") as name:
        out = Path(name) / "callgrind.out"
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        subprocess.run(
            [*argv, sys.executable, "-c", code],
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        for line in out.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError("callgrind wrote no instruction total")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("statements", nargs="+", help="Python statements (one line each)")
    parser.add_argument("--setup", default="pass", help="run once before (imports, data)")
    parser.add_argument("--number", type=int, default=2000, help="runs per count (default 2000)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind not found: apt-get install -y valgrind")
    for statement in args.statements:
        once = total(args.setup, statement, args.number)
        twice = total(args.setup, statement, 2 * args.number)
        print(f"{(twice - once) / args.number:10,.0f}  {statement}", flush=True)


if __name__ == "__main__":
    main()
