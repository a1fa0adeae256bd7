"""A service whose run command exits, through the CLI and a real controller daemon.

`serve up` stops with one line naming the exit code and the replica's log
file (exit status 1), `serve status` shows the FAILED reason, each replica's
exit code and the last lines of the log, and `serve retry` launches again.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.status import wait_status
from tests.test_e2e_local import cli

SPEC = """\
name: exits
service:
  readiness_probe: /
  replicas: 1
run: |
  echo "loading the model"
  echo "no such file: weights.bin" >&2
  exit 3
"""


@pytest.mark.timeout(180)
def test_a_run_that_exits_fails_serve_up_status_shows_why_and_retry_relaunches(
    tmp_path: Path, skyctl_home: Path
) -> None:
    spec = tmp_path / "exits.yaml"
    spec.write_text(SPEC)
    up = cli(skyctl_home, "serve", "up", str(spec), "--timeout", "120")
    assert up.returncode == 1, up.stdout + up.stderr
    line = up.stderr.strip().splitlines()[-1]
    assert line.startswith("error: service exits FAILED: ") and "exit code 3 (log " in line

    def replicas() -> list[dict[str, object]]:
        (svc,) = json.loads(cli(skyctl_home, "serve", "status", "exits", "-o", "json").stdout)
        return list(svc["replicas"])

    # `serve up` returns once the service is FAILED; the failed replica's instance may
    # still be going (SHUTTING_DOWN) on a loaded machine
    wait_status(  # through the API, then shown by `serve status exits -o json -a`
        skyctl_home,
        "exits",
        lambda s: [r["status"] for r in s["replicas"]] == ["TERMINATED"],
        "the failed replica TERMINATED",
        30,
    )
    table = cli(skyctl_home, "serve", "status", "exits", "-a").stdout
    assert "FAILED: version 1:" in table and "TERMINATED (FAILED, exit 3)" in table
    assert "no such file: weights.bin" in table  # the log's last lines

    (svc,) = json.loads(cli(skyctl_home, "serve", "status", "exits", "-o", "json").stdout)
    assert svc["status"] == "FAILED" and "exit code 3" in svc["failure"]
    rows = svc["replicas"]
    assert len(rows) == 1 and rows[0]["exit_code"] == 3  # one FAILED row, as SkyServe
    assert rows[0]["log_tail"][-2:] == ["loading the model", "no such file: weights.bin"]

    retry = cli(skyctl_home, "serve", "retry", "exits")
    assert retry.returncode == 0 and "retrying version 1" in retry.stdout
    assert cli(skyctl_home, "serve", "down", "exits").returncode == 0


def test_retry_of_a_missing_service_fails_in_one_line(skyctl_home: Path) -> None:
    result = cli(skyctl_home, "serve", "retry", "nope")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "nope" in result.stderr
