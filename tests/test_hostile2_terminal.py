"""What replicas wrote reaches the terminal without escapes (status, events, up).

`serve status`, `serve logs --events` and `serve up`'s wait print it.

A replica's log tail, a failure or error line, an event's message and the
table cells (a spec's ``instance_type``) reach the user's terminal. An ANSI or
OSC sequence in them (clear the screen, retitle the window, move the cursor
up and overwrite the table) is printed as visible ``\\x1b`` text, and a cell's
``[/bold]`` is text, not rich markup (it raised MarkupError on a terminal).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from skyctl import cli_logs, cli_status
from skyctl.cli_wait import wait_ready
from skyctl.config import paths
from skyctl.errors import SkyctlError
from tests.helpers.cli import run_cli
from tests.test_cli_status import service
from tests.test_cli_wait_failed import _Controller
from tests.test_cli_wait_failed import failed as failed_service

CLEAR = "\x1b[2J\x1b[H"
TITLE = "\x1b]0;pwned\x07"
UP = "\x1b[1A\r"  # up a line, back to its start: overwrite what was printed
HOSTILE = f"boom{CLEAR}{TITLE}{UP}\x9b31m fake READY"


def failed(now: float) -> dict[str, Any]:
    svc = service(now)
    svc["status"] = "FAILED"
    svc["failure"] = f"last replica 3: run failed{TITLE}"
    svc["replicas"][1]["log_tail"] = ["ok line", HOSTILE]
    svc["replicas"][1]["instance_type"] = f"x[/bold]y{CLEAR}"
    return svc


@click.command()
def status_command() -> None:
    cli_status.show([failed(time.time())], True)


@pytest.mark.parametrize("env", [{}, {"FORCE_COLOR": "1", "COLUMNS": "200"}], ids=["pipe", "tty"])
def test_status_prints_log_tails_errors_and_cells_without_escapes(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    result = CliRunner(env=env).invoke(status_command, [], catch_exceptions=False)
    out = result.output
    for seq in ("\x1b[2J", "\x1b]", "\x07", "\x1b[1A", "\r", "\x9b"):
        assert seq not in out
    assert "    boom\\x1b[2J\\x1b[H\\x1b]0;pwned\\x07\\x1b[1A\\x0d\\x9b31m fake READY" in out
    assert "FAILED: last replica 3: run failed\\x1b]0;pwned\\x07" in out
    assert "x[/bold]y\\x1b[2J\\x1b[H" in out.replace("\n", "")  # the cell, verbatim


def test_printable_keeps_text_and_tabs_and_shows_controls() -> None:
    assert cli_status.printable("GET /v1 200\tok é 日本") == "GET /v1 200\tok é 日本"
    assert cli_status.printable("a\nb\x00c\x7f") == "a\\x0ab\\x00c\\x7f"


def test_an_event_message_is_printed_without_escapes() -> None:
    line = cli_logs.format_event({"at": 0.0, "kind": "error", "replica": 2, "message": HOSTILE})
    assert "\x1b" not in line and "\r" not in line
    assert line.endswith(
        "error replica 2: boom\\x1b[2J\\x1b[H\\x1b]0;pwned\\x07\\x1b[1A\\x0d\\x9b31m fake READY"
    )


def test_serve_ups_wait_prints_a_failure_without_escapes() -> None:
    svc = failed_service(f"version 1: last replica 1: launch failed: {HOSTILE}", [1])
    with pytest.raises(SkyctlError) as e:
        wait_ready(_Controller(svc), "llm", timeout=5)  # type: ignore[arg-type]
    assert "\x1b" not in str(e.value) and "\r" not in str(e.value)
    assert "launch failed: boom\\x1b[2J" in str(e.value)


def test_an_error_line_quoting_a_spec_prints_without_escapes(tmp_path: Path) -> None:
    spec = tmp_path / "svc.yaml"
    spec.write_text('"\\e[2J\\e]0;pwned\\a": 1\nname: a\nservice: {replicas: 1}\nrun: x\n')
    result = run_cli(tmp_path / "home", "serve", "up", str(spec))
    assert result.returncode == 2
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "\\x1b[2J\\x1b]0;pwned\\x07: unknown key" in result.stderr


def test_the_controller_log_prints_without_escapes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = paths(tmp_path)
    p.daemon_log.parent.mkdir(parents=True, exist_ok=True)
    p.daemon_log.write_text(f"2026-01-01 INFO skyctl: launch failed: {HOSTILE}\nnext line\n")
    cli_logs._daemon_log(p, None, False, router_only=False)
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "\x9b" not in out
    assert out.splitlines() == [
        "2026-01-01 INFO skyctl: launch failed: boom\\x1b[2J\\x1b[H\\x1b]0;pwned\\x07"
        "\\x1b[1A\\x0d\\x9b31m fake READY",
        "next line",
    ]
