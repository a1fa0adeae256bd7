"""What `serve up` says when Ctrl-C comes, as a peer reads docs/cli.md ("Ctrl-C").

Before the request was sent nothing was created; while it was on its way the
CLI cannot know, and says so, naming the service where it knows the name;
once the controller answered, the service keeps starting. Before: a Ctrl-C
during the request printed `Service the service keeps starting ... skyctl
serve down the service` for a spec without `name:`, and every message after
the submission still hedged "(if it was submitted)".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import skyctl.cli as cli_module
from skyctl.cli import cli
from skyctl.errors import ServiceNotFound, SkyctlError

SPEC = "service:\n  readiness_probe: /\n  replicas: 1\nrun: exec python3 -m http.server $PORT\n"


class Interrupting:
    """A controller client whose calls are cut by Ctrl-C once ``after`` calls answered."""

    def __init__(self, after: int) -> None:
        self.after = after

    def call(self, method: str, path: str, body: Any = None) -> Any:
        if self.after == 0:
            raise KeyboardInterrupt
        self.after -= 1
        return {"name": "named-by-controller", "endpoint": "http://127.0.0.1:1"}


def up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after: int, *args: str) -> tuple[int, str]:
    spec = tmp_path / "web-app.yaml"
    spec.write_text(SPEC)
    client = Interrupting(after)
    monkeypatch.setattr(cli_module.ControllerClient, "ensure", lambda *a, **k: client)
    result = CliRunner().invoke(
        cli, ["--home", str(tmp_path / "home"), "serve", "up", str(spec), *args]
    )
    return result.exit_code, result.output


def test_ctrl_c_while_submitting_a_named_service_says_it_may_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out = up(tmp_path, monkeypatch, 0, "-n", "web")
    assert code == 130
    assert "service web may have been created" in out
    assert "skyctl serve status web" in out and "skyctl serve down web" in out
    assert "keeps starting" not in out


def test_ctrl_c_while_submitting_an_unnamed_spec_names_no_made_up_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out = up(tmp_path, monkeypatch, 0)
    assert code == 130
    assert "the service keeps" not in out and "serve down the service" not in out
    assert "a service (named after the spec file) may have been created" in out


def test_ctrl_c_after_the_submission_says_it_keeps_starting_without_doubt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out = up(tmp_path, monkeypatch, 1)  # the POST answered, the first poll is cut
    assert code == 130
    assert "Stopped waiting. Service named-by-controller keeps starting in the controller." in out
    assert "if it was submitted" not in out
    assert "skyctl serve down named-by-controller" in out


class Warning_(Interrupting):
    def call(self, method: str, path: str, body: Any = None) -> Any:
        return {
            "name": "web",
            "endpoint": "http://127.0.0.1:1",
            "warnings": ["service.auth: no API key: every request to web gets 401"],
        }


def test_serve_up_prints_the_controllers_warnings_on_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tmp_path / "web.yaml"
    spec.write_text(SPEC)
    monkeypatch.setattr(cli_module.ControllerClient, "ensure", lambda *a, **k: Warning_(0))
    result = CliRunner().invoke(
        cli, ["--home", str(tmp_path / "home"), "serve", "up", str(spec), "-n", "web", "-d"]
    )
    assert result.exit_code == 0
    assert "warning: service.auth: no API key: every request to web gets 401" in result.stderr


class TakenDown:
    """A controller whose service is taken down (another `serve down`) once submitted."""

    def call(self, method: str, path: str, body: Any = None) -> Any:
        if method == "GET":
            raise ServiceNotFound("no service named 'web'")
        return {"name": "web", "endpoint": "http://127.0.0.1:1", "version": 2}


@pytest.mark.parametrize(
    ("args", "waiting"),
    [
        (("serve", "up", "{spec}", "-n", "web"), "waiting for a ready replica"),
        (("serve", "update", "web", "{spec}"), "rolling out version 2"),
    ],
    ids=["up", "update"],
)
def test_a_service_taken_down_while_a_command_waits_on_it_is_said_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], waiting: str
) -> None:
    # it ended `error: no service named 'web'`, exit 2: the answer to a name never given
    spec = tmp_path / "web.yaml"
    spec.write_text(SPEC)
    monkeypatch.setattr(cli_module.ControllerClient, "ensure", lambda *a, **k: TakenDown())
    monkeypatch.setattr(cli_module, "_controller", lambda ctx: TakenDown())
    argv = [a.format(spec=spec) for a in args]
    result = CliRunner().invoke(cli, ["--home", str(tmp_path / "home"), *argv])
    error = result.exception  # `skyctl` prints it as one line with its exit code (cli_exit)
    assert isinstance(error, SkyctlError) and error.exit_code == 1, result.output
    assert str(error) == (
        f"service web was taken down while {waiting} (another `skyctl serve down`)"
    )


def test_a_controller_that_runs_but_does_not_answer_is_not_called_unstarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a SIGSTOPped controller: `serve status` said "the controller did not start within
    # 30s" after printing "starting the skyctl controller"
    import json
    import os
    import socket

    from skyctl import client as client_module
    from skyctl.config import paths

    p = paths(str(tmp_path / "home"))
    p.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    with socket.socket() as s:  # a port nothing answers on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    p.daemon_info.write_text(json.dumps({"pid": os.getpid(), "host": "127.0.0.1", "port": closed}))
    monkeypatch.setattr(client_module, "_start_supervisor", lambda p: None)
    monkeypatch.setattr(client_module, "START_TIMEOUT", 0.3)
    said: list[str] = []
    with pytest.raises(SkyctlError) as error:
        client_module.ControllerClient.ensure(p, progress=said.append)
    assert said == [f"the controller (pid {os.getpid()}) is not answering; waiting for it"]
    assert str(error.value).startswith(
        f"the controller (pid {os.getpid()}) runs but did not answer within 0s (stopped or"
    )
