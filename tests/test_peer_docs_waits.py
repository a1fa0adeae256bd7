"""Waiting, timeouts and what an update is applied to, as a peer reads README.md's
command table and docs/cli.md, checked black-box through ``python -m skyctl``
against one controller shared by the module (each test makes its own services).

``serve up --timeout`` and ``serve down --timeout`` exit 1 saying what is left;
Ctrl-C while ``serve update`` follows its roll-out stops only the waiting; NAME
wins over the spec's ``name:``; an identical spec relaunches a FAILED service;
a ``service.router.port`` another program holds is refused at once (exit 2,
nothing created).
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.processes import kill_leftovers, pids_mentioning
from tests.helpers.waiting import wait_until
from tests.test_peer_docs_follow import start
from tests.test_peer_docs_service import Home

pytestmark = pytest.mark.timeout(180)

STUBBORN = "trap '' TERM; exec python3 -m http.server \"$PORT\" --bind 127.0.0.1"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    h = Home(tmp_path_factory.mktemp("peer-docs-waits"))
    h.ok("serve", "up", str(h.spec("anchor", replicas=1)))  # keeps the controller up
    try:
        yield h
    finally:
        h.run("serve", "down", "--all", "-y", "--timeout", "60")
        kill_leftovers(h.path)


def names(home: Home) -> set[str]:
    return {s["name"] for s in home.json()}


def test_serve_up_timeout_with_no_replica_ready_is_exit_1_and_the_service_stays(
    home: Home,
) -> None:
    path = home.spec("slowstart", replicas=1).with_name("slowstart-never.yaml")
    path.write_text(home.spec("slowstart", replicas=1).read_text().replace("path: /", "path: /x"))
    result = home.run("serve", "up", str(path), "--timeout", "1")
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: no replica of slowstart became ready within 1s"), line
    assert "skyctl serve status slowstart" in line
    assert "slowstart" in names(home)  # only the waiting stopped
    home.ok("serve", "down", "slowstart")


def test_serve_down_timeout_exits_1_with_what_is_left_and_the_shutdown_goes_on(
    home: Home,
) -> None:
    path = home.spec("stubborn", replicas=1).with_name("stubborn-term.yaml")
    path.write_text(home.spec("stubborn", replicas=1).read_text().split("run:")[0])
    path.write_text(path.read_text() + f"run: {STUBBORN}\n")
    home.ok("serve", "up", str(path))
    result = home.run("serve", "down", "stubborn", "--timeout", "0")
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert "not down within 0s; left: stubborn is not down" in line, line
    # the shutdown went on in the controller: gone once the 5 s grace has passed
    assert wait_until(lambda: "stubborn" not in names(home), 60, every=1), home.json()


def test_ctrl_c_while_an_update_rolls_out_stops_only_the_waiting(home: Home) -> None:
    home.ok("serve", "up", str(home.spec("rolled", replicas=1)))
    never = home.spec("rolled", replicas=1).with_name("rolled-never.yaml")
    relaunched = home.spec("rolled", 1, " --directory .").read_text()  # a new run: relaunched
    never.write_text(relaunched.replace("path: /", "path: /x"))  # and never ready
    waiting = start(home, "serve", "update", "rolled", str(never))
    try:
        assert waiting.stdout is not None
        assert "rolling update to version 2 started" in waiting.stdout.readline()
        waiting.send_signal(signal.SIGINT)
        _, err = waiting.communicate(timeout=30)
    finally:
        waiting.kill()
        waiting.communicate()
    assert waiting.returncode == 130
    assert "Stopped waiting. The update of rolled goes on in the controller" in err
    assert home.one("rolled")["version"] == 2
    home.ok("serve", "down", "rolled")


def test_update_name_wins_over_the_specs_name(home: Home) -> None:
    home.ok("serve", "up", "-n", "renamed", str(home.spec("specname", replicas=1)))
    out = home.ok(
        "serve", "update", "renamed", str(home.spec("specname", 1, " --directory ."))
    ).stdout
    assert "Service renamed runs version 2" in out
    assert home.one("renamed")["version"] == 2
    assert "specname" not in names(home)
    home.ok("serve", "down", "renamed")


def test_an_identical_spec_relaunches_a_failed_service(home: Home) -> None:
    path = home.spec("crashy", replicas=1).with_name("crashy-exit.yaml")
    path.write_text(home.spec("crashy", replicas=1).read_text().split("run:")[0] + "run: exit 3\n")
    assert home.run("serve", "up", str(path)).returncode == 1
    assert home.one("crashy")["status"] == "FAILED"
    again = home.run("serve", "update", "crashy", str(path))
    assert again.returncode == 1  # it fails again, but it was launched again
    svc = home.json("crashy", all_replicas=True)[0]
    assert len(svc["replicas"]) == 2, svc["replicas"]
    home.ok("serve", "down", "crashy")


def test_a_router_port_another_program_holds_is_refused_at_once_creating_nothing(
    home: Home,
) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        path = home.spec("taken", replicas=1).with_name("taken-port.yaml")
        path.write_text(
            home.spec("taken", replicas=1)
            .read_text()
            .replace("  replicas: 1\n", f"  replicas: 1\n  router:\n    port: {port}\n")
        )
        result = home.run("serve", "up", str(path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: service 'taken': cannot open its endpoint: 127.0.0.1:{port} "
        "(service.router.port): Address already in use"
    )
    assert "taken" not in names(home)


def test_down_all_force_stops_every_instance_without_the_controller(
    skyctl_home: Path, tmp_path: Path
) -> None:
    """`--all --force` needs neither the controller nor the database: it stops the
    controller, then every instance skyctl tagged, and says what it terminated."""
    (tmp_path / "force").mkdir()
    h = Home(tmp_path / "force")
    h.path = skyctl_home
    h.ok("serve", "up", str(h.spec("forced")))
    assert pids_mentioning(str(skyctl_home / "local"))
    result = h.run("serve", "down", "--all", "--force", "-y")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "forced" in result.stdout
    assert wait_until(lambda: not pids_mentioning(str(skyctl_home)), 30), pids_mentioning(
        str(skyctl_home)
    )
    assert h.run("serve", "status", "-o", "json").stdout.strip() == "[]"


def test_down_purge_past_its_timeout_forgets_the_service_saying_what_may_be_left(
    home: Home,
) -> None:
    path = home.spec("sticky", replicas=1).with_name("sticky-term.yaml")
    path.write_text(home.spec("sticky", replicas=1).read_text().split("run:")[0])
    path.write_text(path.read_text() + f"run: {STUBBORN}\n")
    home.ok("serve", "up", str(path))
    result = home.run("serve", "down", "sticky", "--purge", "--timeout", "0")
    out = result.stdout + result.stderr
    if result.returncode == 0:  # the provider already listed nothing: said so
        assert "Purged sticky from the store; no instance of it is listed on local." in out
    else:
        assert result.returncode == 1
        assert "purged sticky from the store though its teardown did not finish" in out
        assert "may keep running (and billing) on local" in out
        assert "--all --force" in out
    assert "sticky" not in names(home)
    gone = home.run("serve", "status", "sticky")
    assert gone.returncode == 2 and "no service named 'sticky'" in gone.stderr


def test_serve_up_waiting_on_a_service_taken_down_meanwhile_says_so_with_exit_1(
    home: Home,
) -> None:
    path = home.spec("doomed", replicas=1).with_name("doomed-never.yaml")
    path.write_text(home.spec("doomed", replicas=1).read_text().replace("path: /", "path: /x"))
    waiting = start(home, "serve", "up", str(path))
    try:
        assert waiting.stdout is not None
        assert waiting.stdout.readline().startswith("Service doomed: endpoint ")
        home.ok("serve", "down", "doomed")
        _, err = waiting.communicate(timeout=60)
    finally:
        waiting.kill()
        waiting.communicate()
    assert waiting.returncode == 1
    assert "service doomed was taken down while waiting for a ready replica" in err
