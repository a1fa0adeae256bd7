"""A spec that cannot run on the local provider fails fast, in one line.

A setup that fails: `serve up` exits 1 with the exit code and the replica's log
file, and launching stops. (A fixed serving port for several replicas runs:
tests/test_local_fixed_port.py.)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tests.test_e2e_local import cli


@pytest.mark.timeout(150)
def test_a_failing_setup_fails_serve_up_in_one_line_naming_the_log_and_stops_launching(
    tmp_path: Path, skyctl_home: Path
) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "name: badsetup\nservice:\n  readiness_probe: /\n  replicas: 2\n"
        "setup: echo installing; exit 7\n"
        f'run: exec {sys.executable} -m http.server "$PORT" --bind 127.0.0.1\n'
    )
    up = cli(skyctl_home, "serve", "up", str(spec), "--timeout", "120")
    assert up.returncode == 1, up.stdout + up.stderr
    line = up.stderr.strip().splitlines()[-1]
    assert line.startswith("error: service badsetup FAILED: "), line
    assert "setup failed with exit code 7" in line
    log = Path(line.split("(log ", 1)[1].split(")", 1)[0])
    assert log.name.startswith("replica-") and "setup failed" in log.read_text()
    launched = len(list(log.parent.glob("replica-*.log")))
    time.sleep(3)
    assert len(list(log.parent.glob("replica-*.log"))) == launched  # nothing keeps launching
    down = cli(skyctl_home, "serve", "down", "badsetup")
    assert down.returncode == 0, down.stdout + down.stderr
