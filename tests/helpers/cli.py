"""Run the ``skyctl`` command line as a user would, against a home of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helpers.cli_fork import forked_cli, forks_like_a_start

ROOT = Path(__file__).resolve().parent.parent.parent


def run_cli(
    home: Path,
    *args: str,
    timeout: float = 120.0,
    log_level: str | None = None,
    cwd: Path = ROOT,
    fresh: bool = False,
) -> subprocess.CompletedProcess[str]:
    """``python -m skyctl ARGS`` with ``SKYCTL_HOME=home``, run in ``cwd`` (the repository
    by default); output captured, never raises on a non-zero exit (the caller asserts
    on ``returncode``). The command runs in a process of its own forked from a server
    that imported the command line once (:mod:`tests.helpers.cli_fork`); ``fresh``
    (or ``SKYCTL_TEST_FRESH_CLI=1`` for the whole run, or an environment that changes
    what an interpreter reads at its start, such as PYTHONIOENCODING) starts a new
    interpreter."""
    env = {**os.environ, "SKYCTL_HOME": str(home)}
    if Path(cwd).resolve() != ROOT:  # elsewhere `-m skyctl` would find the installed copy,
        # not this checkout (a worktree's tests then ran main's code)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if log_level is not None:
        env["SKYCTL_LOG_LEVEL"] = log_level
    if fresh or os.environ.get("SKYCTL_TEST_FRESH_CLI") == "1" or not forks_like_a_start(env):
        return subprocess.run(
            [sys.executable, "-m", "skyctl", *args],
            cwd=cwd,
            env=env,
            text=True,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    return forked_cli(list(args), env, Path(cwd), timeout)


def run_in_process(
    home: Path, args: list[str], capsys: Any, monkeypatch: Any
) -> tuple[int, str, str]:
    """``skyctl ARGS`` in this process (the entry point's exit handling included), with
    ``home``: exit status, stdout, stderr. ``capsys``/``monkeypatch``: pytest's fixtures."""
    from skyctl.cli import cli
    from skyctl.cli_exit import run

    monkeypatch.setattr(sys, "argv", ["skyctl", "--home", str(home), *args])
    capsys.readouterr()
    try:
        run(cli)
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
