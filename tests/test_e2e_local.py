"""End to end on the local provider, through the real CLI and daemon.

A spot service comes up from a spec, a steady stream of GET requests goes
through its endpoint while a hand-made trace takes zones away one after the
other (each preemption announced a second ahead), the preempted replicas are
replaced, and not one request fails. `serve down` then leaves no process, no
port and no replica record behind.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.cli import run_cli
from tests.helpers.processes import pids_mentioning

ROOT = Path(__file__).resolve().parent.parent
ECHO = ROOT / "tests" / "apps" / "echo_server.py"

# three zones; ticks are one second. us-east-1a goes at tick 10, us-east-2a at
# tick 20, and each comes back 6 ticks later: at most one zone is down at a time.
ZONES = {
    "us-east-1a": [1] * 10 + [0] * 6 + [1] * 24,
    "us-east-2a": [1] * 20 + [0] * 6 + [1] * 14,
    "us-west-2a": [1] * 40,
}


def write_trace(folder: Path) -> None:
    avail = folder / "availability"
    avail.mkdir(parents=True)
    prices = {}
    for i, (zone, values) in enumerate(ZONES.items()):
        rows = ["date,availability"]
        for tick, v in enumerate(values):
            t = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(1_676_498_896 + 195 * tick))
            rows.append(f"{t},{v}")
        (avail / f"{zone}_v100_1.csv").write_text("\n".join(rows) + "\n")
        prices[f"{zone}_v100_1"] = [0.9 + 0.1 * i] * len(values)
    (folder / "spot_prices.json").write_text(json.dumps(prices))


SPEC = """\
name: e2e-spot
service:
  readiness_probe:
    path: /health
    initial_delay_seconds: 30
    period_seconds: 0.5
  replica_policy:
    min_replicas: 2
    max_replicas: 2
    num_overprovision: 1
resources:
  cloud: local
  use_spot: true
local:
  trace: trace
  trace_tick_seconds: 1
  notice_seconds: 1
  ondemand_price: 3.06
run: exec {python} {echo}
"""


def cli(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_cli(home, *args, timeout=timeout, log_level="INFO")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.timeout(240)
def test_spot_service_survives_preemptions_with_zero_failed_requests(
    tmp_path: Path, skyctl_home: Path
) -> None:
    write_trace(tmp_path / "trace")
    spec = tmp_path / "spot.yaml"
    spec.write_text(SPEC.format(python=sys.executable, echo=ECHO))

    started = time.monotonic()
    up = cli(skyctl_home, "serve", "up", str(spec), "--timeout", "90")
    assert up.returncode == 0, up.stdout + up.stderr
    first_ready = time.monotonic() - started
    endpoint = next(w for w in up.stdout.split() if w.startswith("http://127.0.0.1:"))
    port = int(endpoint.rsplit(":", 1)[1])

    # steady traffic across both zone outages (ticks 10-16 and 20-26)
    sent = failed = 0
    replicas_seen: set[str] = set()
    deadline = time.monotonic() + 32
    while time.monotonic() < deadline:
        sent += 1
        try:
            with urllib.request.urlopen(endpoint + "/", timeout=10) as r:
                body = json.loads(r.read())
                replicas_seen.add(str(body["replica"]))
                if r.status != 200:
                    failed += 1
        except (urllib.error.URLError, OSError, ValueError):
            failed += 1
        time.sleep(0.02)

    status = json.loads(
        cli(skyctl_home, "serve", "status", "e2e-spot", "-o", "json", "--all-replicas").stdout
    )[0]
    reasons = [r["reason"] for r in status["replicas"]]
    ready_now = [r for r in status["replicas"] if r["status"] == "READY"]
    print(
        f"first ready after {first_ready:.1f}s; sent {sent}, failed {failed}; "
        f"replicas {sorted(replicas_seen)}; reasons {reasons}"
    )

    assert failed == 0, f"{failed} of {sent} requests failed"
    assert sent > 100
    assert reasons.count("PREEMPTED") >= 2, reasons
    assert len(replicas_seen) >= 3  # traffic reached replacements too
    assert len(ready_now) >= 2

    down = cli(skyctl_home, "serve", "down", "e2e-spot")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "is down" in down.stdout

    # nothing left: no replica or controller process, no port, no record
    for _ in range(100):
        if not pids_mentioning(str(skyctl_home)) and not port_open(port):
            break
        time.sleep(0.1)
    assert pids_mentioning(str(skyctl_home)) == []
    assert not port_open(port)
    with sqlite3.connect(skyctl_home / "state.db") as db:
        assert db.execute("select count(*) from replicas").fetchone() == (0,)
        assert db.execute("select count(*) from services").fetchone() == (0,)
    assert not list((skyctl_home / "local").rglob("*.json"))


def test_a_second_up_of_a_running_name_is_a_clear_error(tmp_path: Path, skyctl_home: Path) -> None:
    spec = tmp_path / "svc.yaml"
    spec.write_text(
        "name: twice\nservice:\n  readiness_probe: /health\n  replicas: 1\n"
        f"run: exec {sys.executable} {ECHO}\n"
    )
    assert cli(skyctl_home, "serve", "up", str(spec), "--detach").returncode == 0
    again = cli(skyctl_home, "serve", "up", str(spec), "--detach")
    assert again.returncode == 2
    assert again.stderr.strip().count("\n") == 0
    assert "already exists" in again.stderr
    retried = cli(skyctl_home, "serve", "retry", "twice")  # nothing had failed: said so
    assert retried.returncode == 0 and "twice is not FAILED (" in retried.stdout, retried
    assert cli(skyctl_home, "serve", "down", "--all", "--yes").returncode == 0


def test_a_bad_spec_is_one_line_with_exit_status_2(tmp_path: Path, skyctl_home: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("service:\n  replicas: 1\n  readiness_prob: /\nrun: echo\n")
    for command in (["serve", "validate"], ["serve", "up"]):
        result = cli(skyctl_home, *command, str(spec))
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "bad.yaml:3" in lines[0] and "readiness_prob" in lines[0]
        assert "readiness_probe" in lines[0]  # did you mean
    assert pids_mentioning(str(skyctl_home)) == []  # validation never started a controller
