"""The benchmarks' command lines: bad arguments stop them at once, with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--rounds", "0"], "--rounds must be 1 or more, got 0"),
        (["--baseline", "/nonexistent"], "--baseline /nonexistent: expected a source tree"),
    ],
)
def test_the_router_benchmark_refuses_bad_arguments_before_running(
    args: list[str], says: str
) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.router.run", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    (error,) = [line for line in out.stderr.splitlines() if "error:" in line]
    assert says in error
    assert "Throughput" not in out.stdout  # nothing was measured
