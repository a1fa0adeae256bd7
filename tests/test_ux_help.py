"""``--help`` pages as a new user reads them: examples set apart, as on every other command."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from skyctl.cli import cli


def test_console_help_sets_its_examples_apart() -> None:
    """`skyctl console --help` ran the description into `Examples:` with no blank line."""
    res = CliRunner().invoke(cli, ["console", "--help"])
    assert res.exit_code == 0, res.output
    assert "where there is one.\n\n  Examples:\n    skyctl console\n" in res.output


def test_a_bare_command_group_shows_its_help_page_not_one_error_line() -> None:
    """`skyctl` alone (the first thing a new user types) printed the whole help page
    squeezed into one `error: Usage: ... Options: ... Commands: ...` line (click 8.2+
    raises its help as a usage error, and every usage error was made one line)."""
    for args in ([], ["serve"], ["controller"]):
        res = subprocess.run(
            [sys.executable, "-m", "skyctl", *args], capture_output=True, text=True, timeout=60
        )
        shown = res.stdout + res.stderr
        assert res.returncode in (0, 2), res
        assert not shown.startswith("error:"), shown
        assert "\nCommands:\n" in shown and "\nOptions:\n" in shown, shown
