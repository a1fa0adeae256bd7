"""`serve logs` as `sky serve logs`: --tail, dated events (all of them, and followed),
the controller's and the load balancer's log; Ctrl-C in `serve up` says what goes on."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from skyctl.cli import cli as skyctl
from tests.conftest import ROOT
from tests.helpers.cli import run_in_process
from tests.test_e2e_local import ECHO, cli

SPEC = """\
name: logs-demo
envs:
  ECHO_SERVER_LOG: "1"
service:
  readiness_probe:
    path: /health
    period_seconds: 0.5
  replicas: 1
run: exec {python} {echo}
"""

NEVER_READY = """\
name: slow-demo
service:
  readiness_probe:
    path: /health
    initial_delay_seconds: 600
  replicas: 1
run: exec sleep 600
"""

DATED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")


def invoke(home: Path, *args: str) -> list[str]:
    result = CliRunner().invoke(skyctl, ["--home", str(home), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def popen(home: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "SKYCTL_HOME": str(home), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "skyctl", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def assert_tail_is_the_last_line(home: Path, before: list[str], *flags: str) -> None:
    """``--tail 1`` prints one line: the log's last one when it ran (the replica may
    log more meanwhile, e.g. its probes: so a line at or after ``before``'s last)."""
    tail = invoke(home, "serve", "logs", "logs-demo", *flags, "--tail", "1")
    after = invoke(home, "serve", "logs", "logs-demo", *flags)
    assert len(tail) == 1 and after[: len(before)] == before
    assert tail[0] in after[len(before) - 1 :], (tail, after[len(before) - 1 :])


@pytest.mark.timeout(180)
def test_tail_events_with_dates_and_follow(tmp_path: Path, skyctl_home: Path) -> None:
    spec = tmp_path / "svc.yaml"
    spec.write_text(SPEC.format(python=sys.executable, echo=ECHO))
    assert cli(skyctl_home, "serve", "up", str(spec)).returncode == 0

    full = invoke(skyctl_home, "serve", "logs", "logs-demo")
    assert len(full) >= 2
    assert_tail_is_the_last_line(skyctl_home, full)

    events = invoke(skyctl_home, "serve", "logs", "logs-demo", "--events")
    assert len(events) >= 2 and all(DATED.match(e) for e in events), events
    assert_tail_is_the_last_line(skyctl_home, events, "--events")

    follower = popen(skyctl_home, "serve", "logs", "logs-demo", "--events", "-f")
    try:
        assert follower.stdout is not None
        for _ in events:  # the backlog first
            follower.stdout.readline()
        spec.write_text(SPEC.format(python=sys.executable, echo=ECHO) + "# v2\n")
        spec.write_text(spec.read_text().replace('"1"', '"yes"'))
        assert cli(skyctl_home, "serve", "update", "logs-demo", str(spec)).returncode == 0
        later = follower.stdout.readline()  # a new event, printed as it happens
        assert DATED.match(later) and later.strip() not in events, later
        # taken down: the controller exits with its last service, and -f ends cleanly
        assert cli(skyctl_home, "serve", "down", "logs-demo").returncode == 0
        _, err = follower.communicate(timeout=60)
        assert follower.returncode == 0, err
        assert err.splitlines()[-1] == "(service logs-demo is gone)", err
    finally:
        if follower.poll() is None:
            follower.send_signal(signal.SIGINT)
            follower.wait(timeout=30)


def test_events_are_not_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    from skyctl import cli_logs

    stored = [
        {"id": i, "at": 0.0, "kind": "k", "replica": None, "message": str(i)} for i in range(5)
    ]
    asked: list[str] = []

    class Fake:
        def call(self, method: str, path: str) -> list[dict[str, object]]:
            asked.append(path)
            limit = int(path.rsplit("=", 1)[1])
            return stored[-limit:]

    monkeypatch.setattr(cli_logs, "EVENT_PAGE", 2)
    got = cli_logs.all_events(Fake(), "svc", None)  # type: ignore[arg-type]
    assert [e["id"] for e in got] == [0, 1, 2, 3, 4]
    assert asked[-1].endswith("limit=8")


class Events:
    """A controller's events API: after ``ok`` calls, ``fail`` calls raise
    ``ControllerUnreachable`` (it went away)."""

    def __init__(self, stored: list[dict[str, object]], ok: int, fail: int) -> None:
        self.stored, self.ok, self.fail = stored, ok, fail

    def call(self, method: str, path: str) -> list[dict[str, object]]:
        from skyctl.client import ControllerUnreachable

        if self.ok:
            self.ok -= 1
        elif self.fail:
            self.fail -= 1
            raise ControllerUnreachable("cannot reach the controller at http://x: refused")
        return self.stored


def event(i: int) -> dict[str, object]:
    return {"id": i, "at": 0.0, "kind": "k", "replica": None, "message": f"event {i}"}


def test_following_events_waits_for_a_restarted_controller_and_ends_when_the_service_goes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from skyctl import cli_logs

    first = Events([event(1)], ok=1, fail=1)  # dies after the backlog
    second = Events([event(1), event(2)], ok=1, fail=1)  # the restarted one; then the down
    found = iter([None, second, None])  # found on the second look
    stored = iter([["svc"], ["svc"], ["svc"], []])  # stored while it restarts, then taken down
    monkeypatch.setattr(cli_logs.ControllerClient, "find", lambda p: next(found))
    monkeypatch.setattr(cli_logs, "stored_services", lambda p: next(stored))
    monkeypatch.setattr(cli_logs.time, "sleep", lambda s: None)

    cli_logs._events(None, first, "svc", None, True)  # type: ignore[arg-type]
    out, err = capsys.readouterr()
    assert [line.split(": ", 1)[1] for line in out.splitlines()] == ["event 1", "event 2"]
    # the first exit is a controller gone away; the second went with the service (serve down)
    assert err.count("the controller went away") == 1
    assert err.splitlines()[-1] == "(service svc is gone)"


def test_following_events_gives_up_when_no_controller_comes_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from skyctl import cli_logs
    from skyctl.client import ControllerUnreachable

    clock = iter(range(0, 1000, 10))
    monkeypatch.setattr(cli_logs.ControllerClient, "find", lambda p: None)
    monkeypatch.setattr(cli_logs, "stored_services", lambda p: ["svc"])
    monkeypatch.setattr(cli_logs.time, "sleep", lambda s: None)
    monkeypatch.setattr(cli_logs.time, "monotonic", lambda: float(next(clock)))
    with pytest.raises(ControllerUnreachable, match="cannot reach the controller"):
        cli_logs._events(None, Events([], ok=1, fail=1), "svc", None, True)  # type: ignore[arg-type]


LOG = """\
2026-12-06 10:00:00,000 INFO skyctl.controller: controller 1 listening on 127.0.0.1:1
2026-12-06 10:00:01,000 INFO skyctl.router.server: router a up
2026-12-06 10:00:02,000 INFO skyctl.controller.reconcile: tick
2026-12-06 10:00:03,000 WARNING skyctl.router.health: replica 2 ejected
2026-12-06 10:00:04,000 INFO skyctl.controller: tock
"""


def test_controller_and_load_balancer_logs_with_tail_and_follow(skyctl_home: Path) -> None:
    log = skyctl_home / "controller.log"
    log.write_text(LOG)
    lines = LOG.splitlines()
    assert invoke(skyctl_home, "serve", "logs", "x", "--controller") == lines
    assert invoke(skyctl_home, "serve", "logs", "x", "--controller", "--tail", "2") == lines[-2:]
    assert invoke(skyctl_home, "serve", "logs", "x", "--load-balancer") == [lines[1], lines[3]]
    assert invoke(skyctl_home, "serve", "logs", "x", "--load-balancer", "--tail", "1") == [lines[3]]

    follower = popen(skyctl_home, "serve", "logs", "x", "--load-balancer", "--tail", "0", "-f")
    try:
        assert follower.stdout is not None
        # the follower starts reading at the end of the log whenever it gets there (its
        # start-up takes seconds on a loaded machine): append until it prints a line
        first = ""
        deadline = time.monotonic() + 90
        while not first and time.monotonic() < deadline:
            with log.open("a") as f:
                f.write("2026-12-06 10:00:05,000 INFO skyctl.controller: not the router's\n")
                f.write("2026-12-06 10:00:06,000 INFO skyctl.router.server: new line\n")
            if select.select([follower.stdout], [], [], 1.0)[0]:
                first = follower.stdout.readline().rstrip()
        assert first == "2026-12-06 10:00:06,000 INFO skyctl.router.server: new line"
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(timeout=30)


@pytest.mark.timeout(120)
def test_ctrl_c_in_serve_up_says_the_service_keeps_starting(
    tmp_path: Path, skyctl_home: Path
) -> None:
    spec = tmp_path / "slow.yaml"
    spec.write_text(NEVER_READY)
    up = popen(skyctl_home, "serve", "up", str(spec))
    try:
        assert up.stdout is not None
        while "endpoint" not in up.stdout.readline():
            pass
        time.sleep(0.5)
        up.send_signal(signal.SIGINT)
        _, err = up.communicate(timeout=30)
    finally:
        up.kill()
    assert up.returncode == 130
    assert "slow-demo keeps starting in the controller" in err
    assert "skyctl serve status slow-demo" in err and "skyctl serve down slow-demo" in err
    status = cli(skyctl_home, "serve", "status", "slow-demo", "-o", "json")
    assert status.returncode == 0  # it is still there
    assert cli(skyctl_home, "serve", "down", "slow-demo").returncode == 0


@pytest.mark.timeout(120)
def test_sync_down_and_sky_spelling(
    tmp_path: Path,
    skyctl_home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SkyPilot's spelling: the replica as a second argument, ``--no-follow``, and
    ``--sync-down``: every log of the service (or the named ones) into a new folder,
    its path printed as "Service NAME logs: DIR"."""
    spec = tmp_path / "svc.yaml"
    spec.write_text(SPEC.format(python=sys.executable, echo=ECHO))
    assert cli(skyctl_home, "serve", "up", str(spec)).returncode == 0
    shown = invoke(skyctl_home, "serve", "logs", "logs-demo", "1", "--no-follow")
    assert (
        shown[: len(shown) - 1]
        == invoke(skyctl_home, "serve", "logs", "logs-demo")[: len(shown) - 1]
    )

    (said,) = invoke(skyctl_home, "serve", "logs", "logs-demo", "--sync-down")
    assert said.startswith("Service logs-demo logs: "), said
    folder = Path(said.removeprefix("Service logs-demo logs: "))
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["controller.log", "load_balancer.log", "replica-1.log"], files
    assert all(p.stat().st_mode & 0o077 == 0 for p in folder.iterdir())  # may echo secrets
    replica = (folder / "replica-1.log").read_text().splitlines()
    assert replica and invoke(skyctl_home, "serve", "logs", "logs-demo", "1")[: len(replica)] == (
        replica
    )
    assert (folder / "controller.log").read_text()

    (said,) = invoke(skyctl_home, "serve", "logs", "logs-demo", "--controller", "-s")
    folder = Path(said.removeprefix("Service logs-demo logs: "))
    assert [p.name for p in folder.iterdir()] == ["controller.log"]

    for args, error in (
        (("1", "2"), "give one REPLICA_ID (several only with --sync-down)"),
        (("1", "--replica", "1"), "give the replica as REPLICA_ID or --replica, not both"),
        (("--sync-down", "-f"), "--sync-down writes files: not with --events or --follow"),
    ):
        # in this process, through the entry point's exit handling (a CLI process each
        # was ~0.5 s of CPU for a usage error)
        code, _, err = run_in_process(
            skyctl_home, ["serve", "logs", "logs-demo", *args], capsys, monkeypatch
        )
        assert code == 2 and error in err, err
    code, _, err = run_in_process(
        skyctl_home, ["serve", "logs", "nope", "--sync-down"], capsys, monkeypatch
    )
    assert code != 0 and "no service named 'nope'" in err, err
    assert cli(skyctl_home, "serve", "down", "logs-demo").returncode == 0
