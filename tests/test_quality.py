"""The code stays typed and lint-clean: mypy on our packages, ruff on everything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, text=True, capture_output=True, timeout=600
    )


@pytest.mark.timeout(600)
def test_mypy_is_clean_on_our_packages() -> None:
    result = run("mypy")  # packages and options come from pyproject.toml
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_ruff_finds_nothing() -> None:
    result = run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout[-4000:]


def test_ruff_format_is_applied() -> None:
    result = run("ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout[-4000:]


def test_modules_are_small_enough_to_read_in_one_sitting() -> None:
    too_long = []
    for pkg in ("skyctl", "providers", "policies"):
        for path in (ROOT / pkg).rglob("*.py"):
            lines = len(path.read_text().splitlines())
            if lines > 600:
                too_long.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert not too_long, too_long
