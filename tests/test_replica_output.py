"""A Python replica's output reaches ``serve logs`` while it runs, as under SkyPilot.

SkyPilot runs tasks with ``PYTHONUNBUFFERED=1``; without it a Python server's
``print`` sits in its buffer (stdout is a file, not a terminal) until the
process exits, so ``serve logs`` shows nothing of a replica that is up. The
replica here prints a line and serves; the test asks ``serve logs`` while the
replica is READY, from a shell that does not set the variable itself.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.test_e2e_local import cli

SPEC = """\
name: unbuffered
service:
  readiness_probe:
    path: /
    period_seconds: 0.5
  replicas: 1
run: |
  exec {python} -c '
  import http.server, os
  e = os.environ
  print("loading the model on", e["SKYPILOT_NUM_GPUS_PER_NODE"], "GPUs")
  print("replica", e["SKYPILOT_SERVE_REPLICA_ID"], "of", e["SKYPILOT_SERVICE_NAME"])
  http.server.HTTPServer(("127.0.0.1", int(e["PORT"])),
                         http.server.SimpleHTTPRequestHandler).serve_forever()
  '
"""


@pytest.mark.timeout(180)
def test_a_python_replicas_prints_reach_serve_logs_while_it_runs(
    tmp_path: Path, skyctl_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)
    spec = tmp_path / "svc.yaml"
    spec.write_text(SPEC.format(python=sys.executable))
    up = cli(skyctl_home, "serve", "up", str(spec), "--timeout", "90")
    assert up.returncode == 0, up.stdout + up.stderr

    logs = cli(skyctl_home, "serve", "logs", "unbuffered")
    assert logs.returncode == 0, logs.stderr
    assert "loading the model on 0 GPUs" in logs.stdout
    assert "replica 1 of unbuffered" in logs.stdout
    status = json.loads(cli(skyctl_home, "serve", "status", "unbuffered", "-o", "json").stdout)
    assert status[0]["ready_replicas"] == 1  # still running: the lines did not wait for its exit
    down = cli(skyctl_home, "serve", "down", "unbuffered")
    assert down.returncode == 0, down.stderr
