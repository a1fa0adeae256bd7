"""The state directory as a new user sets it: a SKYCTL_HOME that cannot be a directory is
one line naming the setting and the path (exit 1), and a path with spaces just works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _skyctl(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SKYCTL_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "skyctl", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("below_a_file", [False, True], ids=["a-file", "under-a-file"])
def test_a_home_that_cannot_be_a_directory_is_one_line_naming_it(
    tmp_path: Path, below_a_file: bool
) -> None:
    """It said `error: File exists: /dev/null` or `error: Not a directory: ...`, naming
    neither the state directory nor the setting to change."""
    blocker = tmp_path / "taken"
    blocker.write_text("")
    home = blocker / "h" if below_a_file else blocker
    res = _skyctl(home, "serve", "status")
    assert res.returncode == 1, res
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"error: state directory {home} (--home or $SKYCTL_HOME)")
    assert "SKYCTL_HOME" in lines[0].split(";")[-1]


def test_a_home_with_spaces(tmp_path: Path) -> None:
    home = tmp_path / "with space" / "skyctl home"
    res = _skyctl(home, "serve", "status", "--json")
    assert (res.returncode, res.stdout.strip()) == (0, "[]"), res
    assert home.is_dir()
