"""``skyctl controller stop``'s last line says what goes on: with services stored, the
router process keeps their endpoints answering; with none, nothing is left to answer
(the supervisor and the router process exit too), and it does not claim otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from skyctl import cli as cli_module
from skyctl.cli import cli


def stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stored: list[str]) -> str:
    """``controller stop`` with a controller and a supervisor running, ``stored`` in
    the store (the processes stood in for: what is checked is what the command says)."""
    stopped: list[bool] = []
    monkeypatch.setattr(cli_module.ControllerClient, "find", staticmethod(lambda p: object()))
    monkeypatch.setattr(cli_module, "stop_controller", lambda p: stopped.append(True))
    monkeypatch.setattr(cli_module.supervisor_files, "running_pid", lambda p: 4242)
    monkeypatch.setattr(cli_module, "stored_services", lambda p: stored)
    result = CliRunner().invoke(cli, ["--home", str(tmp_path / "home"), "controller", "stop"])
    assert result.exit_code == 0, result.output
    assert stopped == [True]
    return result.output.strip()


def test_with_services_the_endpoints_keep_answering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    said = stop(tmp_path, monkeypatch, ["web"])
    assert said == "Controller stopped; the endpoints keep answering (`--all` stops them)."


def test_with_no_service_it_claims_no_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert stop(tmp_path, monkeypatch, []) == "Controller stopped."
