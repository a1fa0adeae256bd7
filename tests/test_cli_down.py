"""`serve down` reports only what it verified, through the real CLI and daemon.

- a service name is data: `serve down 'good?x'` never addresses `good`;
- a controller that dies during the down is restarted and the down finishes;
- when it cannot be (a damaged database), the command exits 1 with what is
  left, and `serve down --all --force` still stops every replica skyctl
  launched, found by the provider's own tags.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.cli import ROOT
from tests.helpers.processes import pids_mentioning
from tests.helpers.waiting import wait_until
from tests.test_e2e_local import ECHO, cli

# a replica that ignores SIGTERM: terminating it takes the provider's 5 s grace,
# a window in which the test kills the controller
STUBBORN = """\
name: {name}
service:
  readiness_probe:
    path: /
    period_seconds: 0.5
  replicas: {replicas}
run: trap '' TERM; exec {python} -m http.server "$PORT" --bind 127.0.0.1
"""


def replica_pids(home: Path) -> list[int]:
    """The replica processes (their environment names the local provider's state)."""
    return pids_mentioning(str(home / "local"))


def controller_pid(home: Path) -> int:
    return int(json.loads((home / "controller.json").read_text())["pid"])


def start_down(home: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "SKYCTL_HOME": str(home)}
    return subprocess.Popen(
        [sys.executable, "-m", "skyctl", "serve", "down", *args],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def shutting_down(down: subprocess.Popen[str]) -> str:
    """Wait until the CLI has asked for the shutdown; its first line of output."""
    assert down.stdout is not None
    line = down.stdout.readline()
    assert line.startswith("Shutting down "), line
    return line


def up(home: Path, tmp: Path, name: str, replicas: int = 1) -> None:
    spec = tmp / f"{name}.yaml"
    spec.write_text(STUBBORN.format(name=name, replicas=replicas, python=sys.executable))
    result = cli(home, "serve", "up", str(spec), "--timeout", "60")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(120)
def test_a_service_name_is_data_never_part_of_the_url(tmp_path: Path, skyctl_home: Path) -> None:
    spec = tmp_path / "good.yaml"
    spec.write_text(
        "name: good\nservice:\n  readiness_probe: /health\n  replicas: 1\n"
        f"run: exec {sys.executable} {ECHO}\n"
    )
    assert cli(skyctl_home, "serve", "up", str(spec), "--detach").returncode == 0
    calls = [["down", h] for h in ("good?x", "good#x", "good/../good", "good%3F")]
    calls += [["status", "good?name=good"], ["logs", "good?x"], ["logs", "good?x", "--events"]]
    for args in calls:
        result = cli(skyctl_home, "serve", *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert f"no service named {args[1]!r}" in result.stderr, result.stderr
    status = json.loads(cli(skyctl_home, "serve", "status", "good", "-o", "json").stdout)
    assert status[0]["name"] == "good" and status[0]["status"] != "SHUTTING_DOWN"
    down = cli(skyctl_home, "serve", "down", "good")
    assert down.returncode == 0, down.stderr
    assert "Service good is down: every replica terminated, nothing left on local." in down.stdout


@pytest.mark.timeout(150)
def test_a_controller_killed_during_down_is_restarted_and_the_down_finishes(
    tmp_path: Path, skyctl_home: Path
) -> None:
    up(skyctl_home, tmp_path, "stubborn")
    assert replica_pids(skyctl_home)
    first = controller_pid(skyctl_home)
    down = start_down(skyctl_home, "stubborn")
    shutting_down(down)
    time.sleep(1.5)  # the replica is SHUTTING_DOWN: SIGTERM ignored, 5 s grace running
    os.kill(first, signal.SIGKILL)
    killed = time.monotonic()
    out, err = down.communicate(timeout=90)
    print(f"down finished {time.monotonic() - killed:.1f}s after the controller was killed")
    assert down.returncode == 0, out + err
    # restarted by the supervisor (its warm spare: at once), or by this CLI if none did
    assert "The controller exited before stubborn was down; restart" in err
    assert "Service stubborn is down: every replica terminated, nothing left" in out
    assert wait_until(lambda: not replica_pids(skyctl_home), 10), replica_pids(skyctl_home)


@pytest.mark.timeout(150)
def test_a_controller_that_stops_answering_is_waited_for_never_replaced(
    tmp_path: Path, skyctl_home: Path
) -> None:
    up(skyctl_home, tmp_path, "paused")
    pid = controller_pid(skyctl_home)
    down = start_down(skyctl_home, "paused")
    shutting_down(down)
    os.kill(pid, signal.SIGSTOP)  # alive, answering nothing
    try:
        time.sleep(20)  # past one status call's timeout and a health check
    finally:
        os.kill(pid, signal.SIGCONT)
    out, err = down.communicate(timeout=90)
    assert down.returncode == 0, out + err
    assert "not answering; waiting" in err and "restarting" not in err
    assert "Service paused is down" in out
    assert wait_until(lambda: not replica_pids(skyctl_home), 10)


@pytest.mark.timeout(150)
def test_with_a_damaged_database_down_says_what_is_left_and_force_stops_it_all(
    tmp_path: Path, skyctl_home: Path
) -> None:
    up(skyctl_home, tmp_path, "doomed", replicas=2)
    assert len(replica_pids(skyctl_home)) >= 2
    down = start_down(skyctl_home, "--all", "--yes")
    shutting_down(down)
    time.sleep(1)
    db = skyctl_home / "state.db"
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        path.unlink(missing_ok=True)
    db.write_bytes(b"this is not a database " * 512)
    os.kill(controller_pid(skyctl_home), signal.SIGKILL)
    out, err = down.communicate(timeout=60)
    assert down.returncode == 1, out + err
    line = err.strip().splitlines()[-1]  # before it, maybe: "not answering; waiting"
    assert line.startswith("error: the controller exited and state database"), err
    assert "doomed is not down" in line and "local:doomed-r" in line, line
    assert "--force" in line
    assert replica_pids(skyctl_home), "the replicas were left running, as reported"

    plain = cli(skyctl_home, "serve", "down", "--all", "--yes")
    assert plain.returncode != 0 and "--force" in plain.stderr

    forced = cli(skyctl_home, "serve", "down", "--all", "--force", "--yes")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "local: terminated 2 instance(s) of doomed" in forced.stdout
    assert "state database could not be read" in forced.stdout
    assert "Nothing skyctl launched is left on local." in forced.stdout
    assert wait_until(lambda: not replica_pids(skyctl_home), 10), replica_pids(skyctl_home)
    assert not list((skyctl_home / "local" / "instances").glob("*.json"))


def test_force_needs_all(skyctl_home: Path) -> None:
    result = cli(skyctl_home, "serve", "down", "web", "--force")
    assert result.returncode == 2 and "--force goes with --all" in result.stderr
