"""`serve up` of a service scaled to zero returns: nothing to wait for until a request.

SkyPilot's `examples/serve/min_replicas_zero.yaml` (min_replicas 0) waited for
a ready replica that no request had asked for, until `--timeout`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.helpers.processes import pids_mentioning
from tests.test_e2e_local import cli

SPEC = f"""\
service:
  readiness_probe: /
  replica_policy:
    min_replicas: 0
    max_replicas: 2
    target_qps_per_replica: 1
run: exec {sys.executable} -m http.server "$PORT" --bind 127.0.0.1
"""


@pytest.mark.timeout(120)
def test_serve_up_of_a_service_with_no_replica_to_start_says_so_and_exits_0(
    tmp_path: Path, skyctl_home: Path
) -> None:
    spec = tmp_path / "zero.yaml"
    spec.write_text(SPEC)
    up = cli(skyctl_home, "serve", "up", str(spec), "--timeout", "60")
    assert up.returncode == 0, up.stdout + up.stderr
    last = up.stdout.strip().splitlines()[-1]
    assert last.startswith("Service zero is up at http://127.0.0.1:")
    assert last.endswith("with no replica (min_replicas: 0): the first request starts one")
    assert cli(skyctl_home, "serve", "down", "zero").returncode == 0
    assert not pids_mentioning(str(skyctl_home / "local"))  # no replica was started or left
