"""Following, interrupting and patterns, as a peer reads README.md's command table,
docs/cli.md ("Ctrl-C") and what ``sky serve down`` takes, checked black-box through
``python -m skyctl`` against one controller shared by the module (each test makes
its own services, so the tests hold in any order).

``serve logs --events -f`` ends (exit 0) when its service is taken down;
``serve logs NAME N -f`` ends once that replica is terminated; Ctrl-C while
following prints ``Aborted.`` (exit 130); a reader that closes ``serve status``'s
pipe early ends it quietly; ``serve down 'web-*'`` takes down every service the
pattern matches, as ``sky serve down "service-*"`` (it was "no service named").
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.cli import ROOT
from tests.helpers.processes import kill_leftovers
from tests.helpers.waiting import wait_until
from tests.test_peer_docs_service import Home

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    h = Home(tmp_path_factory.mktemp("peer-docs-follow"))
    h.ok("serve", "up", str(h.spec("anchor", replicas=1)))  # keeps the controller up
    try:
        yield h
    finally:
        h.run("serve", "down", "--all", "-y", "--timeout", "60")
        kill_leftovers(h.path)


def start(home: Home, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "SKYCTL_HOME": str(home.path), "SKYCTL_LOG_LEVEL": "INFO"}
    return subprocess.Popen(
        [sys.executable, "-m", "skyctl", *args],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def names(home: Home) -> set[str]:
    return {s["name"] for s in home.json()}


def test_down_of_a_glob_pattern_takes_down_every_service_it_matches(home: Home) -> None:
    for name in ("web-a", "web-b", "webby"):
        home.ok("serve", "up", "-d", str(home.spec(name, replicas=1)))
    out = home.ok("serve", "down", "web-*", "-y").stdout
    assert "Service web-a is down" in out and "Service web-b is down" in out
    assert "webby" not in out
    assert {"web-a", "web-b"}.isdisjoint(names(home)) and "webby" in names(home)
    home.ok("serve", "down", "webb?")
    assert "webby" not in names(home)


def test_down_of_a_pattern_that_matches_nothing_is_exit_2_and_takes_nothing_down(
    home: Home,
) -> None:
    result = home.run("serve", "down", "nomatch-*", "anchor")
    assert result.returncode == 2
    assert "no service named 'nomatch-*'" in result.stderr
    assert "anchor" in names(home)


def test_logs_events_follow_ends_with_exit_0_when_the_service_is_taken_down(
    home: Home,
) -> None:
    home.ok("serve", "up", str(home.spec("watched", replicas=1)))
    follower = start(home, "serve", "logs", "watched", "--events", "-f")
    try:
        assert follower.stdout is not None
        assert " created: version 1" in follower.stdout.readline()
        home.ok("serve", "down", "watched")
        _, err = follower.communicate(timeout=60)
    finally:
        follower.kill()
        follower.communicate()
    assert follower.returncode == 0, err
    assert "(service watched is gone)" in err


def test_logs_of_a_replica_followed_end_once_that_replica_is_terminated(home: Home) -> None:
    home.ok("serve", "up", str(home.spec("tailed", replicas=1)))
    follower = start(home, "serve", "logs", "tailed", "1", "-f")
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline().startswith("Serving HTTP on 127.0.0.1 port ")
        home.ok("serve", "down", "tailed", "--replica-id", "1")
        _, err = follower.communicate(timeout=60)
    finally:
        follower.kill()
        follower.communicate()
    assert follower.returncode == 0, err
    home.ok("serve", "down", "tailed")


def test_ctrl_c_while_following_logs_says_aborted_with_exit_130(home: Home) -> None:
    follower = start(home, "serve", "logs", "anchor", "--events", "-f")
    try:
        assert follower.stdout is not None
        assert " created: version 1" in follower.stdout.readline()  # past its start-up
        follower.send_signal(signal.SIGINT)
        _, err = follower.communicate(timeout=30)
    finally:
        follower.kill()
        follower.communicate()
    assert follower.returncode == 130
    assert err.strip() == "Aborted."


def test_a_reader_that_closes_the_status_pipe_early_ends_it_quietly(home: Home) -> None:
    env = {**os.environ, "SKYCTL_HOME": str(home.path)}
    command = f"{sys.executable} -m skyctl serve status -a | head -1"
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout == "Services\n"
    assert result.stderr == ""
    # click's handling of a closed pipe: no traceback, no line, exit 1 (or SIGPIPE's 141)
    assert result.returncode in (0, 1, 141)


def test_down_no_wait_returns_once_the_shutdown_has_begun(home: Home) -> None:
    home.ok("serve", "up", "-d", str(home.spec("quick", replicas=1)))
    out = home.ok("serve", "down", "quick", "--no-wait").stdout
    assert out.strip() == "Shutting down quick..."
    left: list[dict[str, Any]] = [s for s in home.json() if s["name"] == "quick"]
    assert not left or left[0]["status"] == "SHUTTING_DOWN"


def test_ended_replicas_show_only_with_a_in_the_table_and_always_in_json(home: Home) -> None:
    home.ok("serve", "up", str(home.spec("ended", replicas=1)))
    home.ok("serve", "down", "ended", "--replica-id", "1")

    def replaced() -> bool:
        rows = home.one("ended")["replicas"]
        return [(r["id"], r["status"]) for r in rows] == [(1, "TERMINATED"), (2, "READY")]

    assert wait_until(replaced, 60, every=1), home.one("ended")
    (ended, live) = home.one("ended")["replicas"]  # JSON: every replica, ended ones too
    assert ended["reason"] == "USER" and ended["uptime_seconds"] is None
    assert live["uptime_seconds"] is not None
    table = home.ok("serve", "status", "ended").stdout
    assert "TERMINATED" not in table
    assert "TERMINATED (USER)" in home.ok("serve", "status", "ended", "-a").stdout
    home.ok("serve", "down", "ended")
