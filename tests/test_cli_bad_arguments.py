"""Bad arguments to the commands this release added are one-line usage errors
(exit 2) naming the argument and what is allowed, before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from skyctl.cli import cli
from skyctl.config import TOKEN_ENV

ROOT = Path(__file__).resolve().parent.parent
SPEC = str(ROOT / "manifests" / "http-server.yaml")


def run(home: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--home", str(home), *args], terminal_width=200)
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize(
    "args",
    [
        ("serve", "up", SPEC, "--timeout", "-1"),
        ("serve", "update", "svc", SPEC, "--timeout", "-1"),
        ("serve", "down", "svc", "--timeout", "-1"),
    ],
    ids=["up", "update", "down"],
)
def test_a_negative_timeout_is_refused(tmp_path: Path, args: tuple[str, ...]) -> None:
    code, out = run(tmp_path, *args)
    assert code == 2 and "Invalid value for '--timeout': -1.0 is not in the range x>=0" in out
    assert not (tmp_path / "controller.json").exists()  # nothing was started


def test_router_run_needs_a_controller_url_and_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "t0ken")
    code, out = run(tmp_path, "router", "run", "--controller", "skyctl-controller:8000")
    assert code == 2 and "--controller: 'skyctl-controller:8000' is not a URL" in out, out
    assert "http(s)://HOST:PORT" in out
    monkeypatch.delenv(TOKEN_ENV)
    code, out = run(tmp_path, "router", "run", "--controller", "http://skyctl-controller:8000")
    assert code == 2 and f"${TOKEN_ENV} is not set" in out, out
