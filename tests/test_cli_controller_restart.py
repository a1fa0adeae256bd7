"""``skyctl controller restart``: stop, then start, and say "restarted" only once the new
controller answers; a stop or a start that fails is one line and exit 1, saying what
runs then; a config.yaml the new controller would refuse stops nothing.

The processes are stood in for (what is checked is the order of the steps and what the
command says); tests/test_router_process.py restarts real ones under load.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skyctl import cli_down
from skyctl.errors import SkyctlError
from tests.helpers.cli import run_in_process


class Processes:
    """A controller (pid in controller.json) under a supervisor, as the steps see them."""

    def __init__(self, home: Path, monkeypatch: pytest.MonkeyPatch, stored: list[str]) -> None:
        self.home = home
        self.steps: list[str] = []
        self.controller: int | None = 100
        self.supervisor: int | None = 4242
        self.next_pid = 200
        self.stop_fails = self.start_fails = False
        home.mkdir(exist_ok=True)
        self._write()
        monkeypatch.setattr(cli_down, "_daemon_running", lambda p: self.controller is not None)
        monkeypatch.setattr(cli_down, "stored_services", lambda p: stored)
        monkeypatch.setattr(cli_down.supervisor_files, "running_pid", lambda p: self.supervisor)
        monkeypatch.setattr(cli_down, "stop_controller", self.stop_controller)
        monkeypatch.setattr(cli_down, "stop_supervisor", self.stop_supervisor)
        monkeypatch.setattr(cli_down.ControllerClient, "ensure", staticmethod(self.ensure))

    def _write(self) -> None:
        info = self.home / "controller.json"
        if self.controller is None:
            info.unlink(missing_ok=True)
        else:
            info.write_text(json.dumps({"pid": self.controller, "host": "x", "port": 1}))

    def stop_controller(self, p: object) -> None:
        self.steps.append("stop controller")
        if self.stop_fails:
            raise SkyctlError(f"controller {self.controller} did not stop within 30s")
        self.controller = None
        self._write()

    def stop_supervisor(self, p: object) -> None:
        self.steps.append("stop supervisor")
        self.supervisor = self.controller = None
        self._write()

    def ensure(self, p: object, progress: object = None) -> object:
        self.steps.append("start")
        if self.start_fails:
            raise SkyctlError("the controller did not start within 30s; see controller.log")
        self.controller, self.next_pid = self.next_pid, self.next_pid + 1
        self.supervisor = self.supervisor or 4343
        self._write()
        return object()


def restart(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str, str]:
    code, out, err = run_in_process(home, ["controller", "restart", *args], capsys, monkeypatch)
    return code, out.strip(), err.strip()


@pytest.fixture
def procs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Processes:
    return Processes(tmp_path / "home", monkeypatch, ["web"])


def test_it_stops_then_starts_and_names_both_controllers(
    procs: Processes, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = restart(procs.home, capsys, monkeypatch)
    assert code == 0, err
    assert procs.steps == ["stop controller", "start"]  # the supervisor (router) kept
    assert out == "Controller restarted (pid 100 -> 200); the endpoints kept answering."
    assert "Stopping the controller (pid 100)" in err  # progress, on stderr


def test_with_all_the_router_process_restarts_too(
    procs: Processes, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = restart(procs.home, capsys, monkeypatch, "--all")
    assert code == 0, err
    assert procs.steps == ["stop supervisor", "start"]
    assert out == (
        "Controller and router process restarted (pid 100 -> 200); "
        "the endpoints were closed meanwhile."
    )


def test_with_no_service_it_waits_for_the_supervisor_to_exit_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A controller stopped with no service makes its supervisor exit: woken meanwhile
    (SIGUSR1) it would exit anyway, and the start waited 30 s for nothing."""
    procs = Processes(tmp_path / "home", monkeypatch, [])
    code, out, err = restart(procs.home, capsys, monkeypatch)
    assert code == 0, err
    assert procs.steps == ["stop controller", "stop supervisor", "start"]
    assert out == "Controller restarted (pid 100 -> 200)."  # no endpoint claimed


def test_a_controller_that_does_not_stop_is_not_started_again(
    procs: Processes, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    procs.stop_fails = True
    code, out, err = restart(procs.home, capsys, monkeypatch)
    assert code == 1
    assert procs.steps == ["stop controller"]
    assert err.splitlines()[-1] == (
        "error: controller 100 did not stop within 30s; nothing was restarted"
    )
    assert "restarted (" not in out


def test_a_controller_that_does_not_come_back_is_an_error_saying_what_runs(
    procs: Processes, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    procs.start_fails = True
    code, out, err = restart(procs.home, capsys, monkeypatch)
    assert code == 1
    assert procs.steps == ["stop controller", "start"]
    assert err.splitlines()[-1] == (
        "error: the controller stopped but did not start again: the controller did not "
        "start within 30s; see controller.log; the endpoints keep answering "
        "(`skyctl controller start` tries again)"
    )
    assert out == ""  # never "restarted"


def test_with_no_controller_running_it_starts_one(
    procs: Processes, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    procs.controller = None  # `controller stop` earlier: the supervisor waits
    procs._write()
    code, out, err = restart(procs.home, capsys, monkeypatch)
    assert code == 0, err
    assert procs.steps == ["start"]
    assert out == "No controller was running; controller started (pid 200)."


def test_a_config_the_new_controller_would_refuse_stops_nothing(
    procs: Processes, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (procs.home / "config.yaml").write_text("router:\n  workers: 0\n")
    code, _, err = restart(procs.home, capsys, monkeypatch)
    assert code == 2
    assert procs.steps == []  # the running controller keeps running
    assert err == (
        f"error: {procs.home.resolve()}/config.yaml:2: router.workers: expected an integer "
        "from 1 to 64, got 0"
    )


@pytest.mark.parametrize("command", [["controller", "start"], ["serve", "status"]])
def test_a_controller_is_not_started_with_a_config_it_would_refuse(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
) -> None:
    """Else a supervisor waiting since `controller stop` started a controller that exited at
    once, again and again, and the command said only "did not start within 30s"."""
    from skyctl import cli, client

    started: list[bool] = []
    monkeypatch.setattr(client, "_start_supervisor", lambda p: started.append(True))
    for module in (cli, client):  # a service stored, no controller: status starts one
        monkeypatch.setattr(module, "stored_services", lambda p: ["web"])
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text("gcp:\n  regoins: [us-central1]\n")
    code, _, err = run_in_process(home, command, capsys, monkeypatch)
    assert code == 2
    assert started == []
    assert err.strip().startswith(
        f"error: {home.resolve()}/config.yaml:2: gcp.regoins: unknown key"
    )


def test_a_start_that_woke_an_exiting_supervisor_starts_a_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`controller stop && controller start` by hand, with no service stored: the stop
    makes the supervisor exit, and the start's SIGUSR1 reached it on its way out. The
    start then waited 30 s for a controller no one would start."""
    from skyctl import client
    from skyctl.config import paths

    p = paths(tmp_path / "home")
    supervisors: list[int | None] = [4242]  # the one exiting, then none
    woken: list[int] = []
    started: list[list[str]] = []

    class NewSupervisor:
        def __init__(self, argv: list[str], **kwargs: object) -> None:
            started.append(argv)
            supervisors.append(4343)

        def poll(self) -> None:
            return None

    def kill(pid: int, sig: int) -> None:
        woken.append(pid)
        supervisors.append(None)  # it exits anyway: its controller stopped, no service

    monkeypatch.setattr(client, "running_pid", lambda p: supervisors[-1])
    monkeypatch.setattr(client.os, "kill", kill)
    monkeypatch.setattr(client.subprocess, "Popen", NewSupervisor)
    monkeypatch.setattr(client, "stored_services", lambda p: [])
    answering = object()
    monkeypatch.setattr(
        client.ControllerClient,
        "find",
        classmethod(lambda cls, p: answering if supervisors[-1] == 4343 else None),
    )
    assert client.ControllerClient.ensure(p) is answering
    assert woken == [4242]
    assert len(started) == 1 and "skyctl.supervisor" in started[0]
