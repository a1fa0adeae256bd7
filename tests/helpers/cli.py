"""Run the ``skyctl`` command line as a user would, against a home of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def run_cli(
    home: Path,
    *args: str,
    timeout: float = 120.0,
    log_level: str | None = None,
    cwd: Path = ROOT,
) -> subprocess.CompletedProcess[str]:
    """``python -m skyctl ARGS`` with ``SKYCTL_HOME=home``, run in ``cwd`` (the repository
    by default); output captured, never raises on a non-zero exit (the caller asserts
    on ``returncode``)."""
    env = {**os.environ, "SKYCTL_HOME": str(home)}
    if log_level is not None:
        env["SKYCTL_LOG_LEVEL"] = log_level
    return subprocess.run(
        [sys.executable, "-m", "skyctl", *args],
        cwd=cwd,
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
