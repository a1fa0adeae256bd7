"""A copy of this checkout with the router compiled (mypyc), as ``SKYCTL_COMPILE=1``
builds it, for the compiled-router tests and the router benchmark.

The copy gets the extensions in place (``setup.py build_ext --inplace``, the
same ``setup.py`` path a wheel build takes), so Python started in it
imports the compiled modules while this checkout stays pure Python.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
COPIED = ("setup.py", "setup.cfg", "pyproject.toml", "README.md", "LICENSE")
COPIED_DIRS = ("skyctl", "policies", "providers", "benchmarks", "tests", "tools")


def compiled_copy(dest: Path, timeout: float = 900.0, opt_level: str = "3") -> Path:
    """Copy the checkout to ``dest`` (created) and compile its router there; returns ``dest``.
    ``opt_level``: the C compiler's -O (3 as `pip install` builds it; the test suite, which
    checks behaviour, not speed, builds at 0: the C compile is most of the build).

    Raises ``RuntimeError`` with the compiler's last lines when the build fails.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        shutil.copy2(ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info", ".pytest_cache")
    for name in COPIED_DIRS:
        shutil.copytree(ROOT / name, dest / name, ignore=ignore, dirs_exist_ok=True)
    done = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=dest,
        env={**os.environ, "SKYCTL_COMPILE": "1", "MYPYC_OPT_LEVEL": opt_level},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise RuntimeError(f"compiling the router failed:\n{tail}")
    return dest


def is_compiled(tree: Path) -> bool:
    """Whether Python started in ``tree`` imports the router as compiled extensions."""
    probe = "import skyctl.router.front as m, policies.routing as r; print(m.__file__, r.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tree, capture_output=True, text=True, check=True
    ).stdout.split()
    return all(path.endswith(".so") for path in out)
