"""A controller killed while `serve up` or `serve update` waits in the foreground.

The supervisor's warm spare takes over within a second and the start or the
roll-out goes on in it (docs/reliability.md), so the waiting command follows
the new controller and ends as it would have: exit 0 once the replica is READY
or the version rolled out, with a line on stderr saying the controller went
away. Before, both exited 1 with `cannot reach the controller at URL:
Connection refused` while the work went on (`serve down` and `serve logs -f`
already reattached).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.cli import ROOT
from tests.test_cli_down import controller_pid
from tests.test_e2e_local import cli

# not ready for 3 s after it starts: the window in which the controller is killed
SLOW = """\
name: slow
service:
  readiness_probe:
    path: /
    period_seconds: 0.5
  replicas: 1
run: |
  sleep {delay}
  exec {python} -m http.server "$PORT" --bind 127.0.0.1
"""


def start(home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "skyctl", *args],
        cwd=ROOT,
        env={**os.environ, "SKYCTL_HOME": str(home)},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def kill_controller_once_waiting(proc: subprocess.Popen[str], marker: str) -> str:
    """Read the command's output up to its first progress line (it polls by then), then
    SIGKILL the controller; the output read so far."""
    assert proc.stdout is not None
    seen = ""
    while marker not in seen:
        line = proc.stdout.readline()
        assert line, seen
        seen += line
    os.kill(controller_pid(Path(os.environ["SKYCTL_HOME"])), signal.SIGKILL)
    return seen


@pytest.mark.timeout(150)
def test_serve_up_and_update_follow_a_controller_killed_while_they_wait(
    tmp_path: Path, skyctl_home: Path
) -> None:
    spec = tmp_path / "slow.yaml"
    spec.write_text(SLOW.format(delay=3, python=sys.executable))
    up = start(skyctl_home, "serve", "up", str(spec), "--timeout", "90")
    seen = kill_controller_once_waiting(up, "] REPLICA_INIT")
    out, err = up.communicate(timeout=120)
    assert up.returncode == 0, seen + out + err
    assert "Service slow is ready at" in out
    assert "The controller went away while waiting for a ready replica" in err

    spec.write_text(SLOW.format(delay=4, python=sys.executable))  # version 2
    update = start(skyctl_home, "serve", "update", "slow", str(spec), "--timeout", "90")
    seen = kill_controller_once_waiting(update, "version 2: 0/1 ready")
    out, err = update.communicate(timeout=120)
    assert update.returncode == 0, seen + out + err
    assert "Service slow runs version 2 on 1 ready replica(s)" in out
    assert "The controller went away while rolling out version 2" in err

    down = cli(skyctl_home, "serve", "down", "slow")
    assert down.returncode == 0, down.stdout + down.stderr
