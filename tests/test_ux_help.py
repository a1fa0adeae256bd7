"""``--help`` pages as a new user reads them: examples set apart, as on every other command."""

from __future__ import annotations

from click.testing import CliRunner

from skyctl.cli import cli


def test_console_help_sets_its_examples_apart() -> None:
    """`skyctl console --help` ran the description into `Examples:` with no blank line."""
    res = CliRunner().invoke(cli, ["console", "--help"])
    assert res.exit_code == 0, res.output
    assert "where there is one.\n\n  Examples:\n    skyctl console\n" in res.output
