"""Failing replicas and FAILED services, as a peer reads docs/reliability.md ("Failing
replicas") and docs/cli.md, checked black-box through ``python -m skyctl`` against one
controller shared by the module.

A run that exits gives the version up at once: ``serve up`` exits 1 with the exit
code and the log file; a server never ready within its initial delay is relaunched
for three rounds, then given up, its line naming the last replica's log file too
(it named none: the file was only on the replica's row); ``serve update`` to a
version that fails says so, exit 1, the service still serving the old version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import ROOT, run_cli
from tests.helpers.processes import kill_leftovers

pytestmark = pytest.mark.timeout(240)

SERVER = 'exec python3 -m http.server "$PORT" --bind 127.0.0.1'
SPEC = """\
name: {name}
service:
  readiness_probe:
    path: {path}
    initial_delay_seconds: {delay}
    period_seconds: 0.5
  replicas: 1
run: {run}
"""


class Home:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "home"
        self.path.mkdir(mode=0o700)
        self.env = {**os.environ, "SKYCTL_HOME": str(self.path), "SKYCTL_LOG_LEVEL": "INFO"}
        self.never: dict[str, subprocess.Popen[str]] = {}

    def spec(self, name: str, run: str, path: str = "/", delay: float = 30) -> Path:
        file = self.root / f"{name}-{abs(hash((run, path, delay)))}.yaml"
        file.write_text(SPEC.format(name=name, run=run, path=path, delay=delay))
        return file

    def run(self, *args: str) -> Any:
        return run_cli(self.path, *args, log_level="INFO")

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "skyctl", *args],
            cwd=ROOT,
            env=self.env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def json(self, name: str) -> dict[str, Any]:
        result = self.run("serve", "status", name, "-o", "json", "-a")
        assert result.returncode == 0, result.stderr
        (svc,) = json.loads(result.stdout)
        return dict(svc)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    h = Home(tmp_path_factory.mktemp("peer-docs-failures"))
    up = h.run("serve", "up", str(h.spec("base", SERVER)), "--timeout", "90")
    assert up.returncode == 0, up.stdout + up.stderr
    # the slow ones (three rounds of a 1 s initial delay, 10 s of backoff) run together,
    # while the tests of the quick failures run
    h.never["up"] = h.start("serve", "up", str(h.spec("never", SERVER, "/health", 1)))
    v2 = h.spec("base", SERVER + " --directory .", "/health", 1)
    h.never["update"] = h.start("serve", "update", "base", str(v2), "--timeout", "180")
    try:
        yield h
    finally:
        for proc in h.never.values():
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        h.run("serve", "down", "--all", "-y", "--timeout", "60")
        kill_leftovers(h.path)


def finished(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=200)
    return proc.returncode, out, err


def test_serve_up_of_a_run_that_exits_is_exit_1_with_the_exit_code_and_log_file(
    home: Home,
) -> None:
    result = home.run("serve", "up", str(home.spec("bug", "echo about to fail; exit 3")))
    assert result.returncode == 1
    log = home.path / "local" / "logs" / "bug" / "replica-1.log"
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(
        "error: service bug FAILED: version 1: 1 replica failed, none ever READY; "
        f"last replica 1: run failed with exit code 3 (log {log})"
    ), line
    svc = home.json("bug")
    assert svc["status"] == "FAILED" and svc["failure"] and svc["last_error"]
    (r,) = svc["replicas"]
    assert (r["status"], r["reason"], r["exit_code"]) == ("TERMINATED", "FAILED", 3)
    assert r["failure"] == f"run failed with exit code 3; log {log}"
    assert r["log_tail"] == ["about to fail"]


def test_status_of_a_failed_service_shows_why_and_the_logs_last_lines(home: Home) -> None:
    home.run("serve", "up", str(home.spec("bug2", "echo boom; exit 3")))
    out = home.run("serve", "status", "bug2", "-a").stdout
    assert "TERMINATED (FAILED, exit 3)" in out
    assert "bug2 FAILED: version 1: 1 replica failed, none ever READY; last replica 1" in out
    assert "  last lines of replica 1's log:\n    boom" in out
    assert home.run("serve", "logs", "bug2", "1").stdout == "boom\n"


def test_a_failed_version_relaunches_nothing(home: Home) -> None:
    home.run("serve", "up", str(home.spec("bug3", "exit 3")))
    first = [r["id"] for r in home.json("bug3")["replicas"]]
    assert first == [1]
    # the controller has ticked since: another `serve status` still shows the one row
    home.run("serve", "logs", "bug3", "--events")
    assert [r["id"] for r in home.json("bug3")["replicas"]] == [1]


def test_a_server_left_in_the_background_is_run_exited_with_code_0(home: Home) -> None:
    result = home.run("serve", "up", str(home.spec("bg", "python3 -m http.server $PORT &")))
    assert result.returncode == 1
    assert "run exited with code 0 (it must keep the server in the foreground)" in result.stderr


def test_retry_launches_a_failed_services_version_again(home: Home) -> None:
    home.run("serve", "up", str(home.spec("again", "exit 3")))
    result = home.run("serve", "retry", "again")
    assert result.returncode == 0, result.stderr
    assert "again" in result.stdout
    events = home.run("serve", "logs", "again", "--events").stdout
    assert "retry: version 1: failures forgotten" in events


def test_a_failed_service_is_taken_down_like_any_other(home: Home) -> None:
    home.run("serve", "up", str(home.spec("bug4", "exit 3")))
    down = home.run("serve", "down", "bug4")
    assert down.returncode == 0, down.stderr
    assert "Service bug4 is down" in down.stdout


def test_a_version_given_up_for_its_initial_delay_names_the_last_replicas_log_file(
    home: Home,
) -> None:
    code, out, err = finished(home.never["up"])
    assert code == 1, out + err
    svc = home.json("never")
    last = max(r["id"] for r in svc["replicas"])
    assert len(svc["replicas"]) == 3  # three rounds, then given up
    assert all(r["reason"] == "FAILED_INITIAL_DELAY" for r in svc["replicas"])
    log = home.path / "local" / "logs" / "never" / f"replica-{last}.log"
    line = err.strip().splitlines()[-1]
    assert line.startswith(
        "error: service never FAILED: version 1: 3 replicas failed, none ever READY; "
        f"last replica {last}: FAILED_INITIAL_DELAY (not ready 1s after it started) "
        f"(log {log})"
    ), line
    assert f"its output: `skyctl serve logs never --replica {last}`" in line
    status = home.run("serve", "status", "never", "-a").stdout
    assert "TERMINATED (FAILED_INITIAL_DELAY)" in status
    assert f"after it started) (log {log})\n" in status
    assert f"  last lines of replica {last}'s log:" in status


def test_an_update_whose_version_fails_exits_1_and_the_old_version_keeps_serving(
    home: Home,
) -> None:
    code, out, err = finished(home.never["update"])
    assert code == 1, out + err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: version 2 of base FAILED: version 2: "), line
    assert "FAILED_INITIAL_DELAY" in line and "(log " in line, line
    assert "; still serving version(s): 1; " in line
    svc = home.json("base")
    assert svc["status"] == "READY" and svc["serving_versions"] == [1]
    assert any(r["version"] == 1 and r["status"] == "READY" for r in svc["replicas"])
