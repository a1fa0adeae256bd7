"""Every command's --help ends with examples (click epilogs), kept line by line."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from skyctl.cli import cli


def commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [path]
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out += commands(cmd, (*path, name))
        else:
            out.append((*path, name))
    return out


@pytest.mark.parametrize("path", commands(cli), ids=lambda p: " ".join(p) or "skyctl")
def test_help_has_examples(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    examples = result.output.split("Examples:", 1)
    assert len(examples) == 2, result.output
    text = examples[1].split("Options:", 1)[0]  # the examples may precede the options
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    assert lines and all(ln.startswith(("skyctl ", "curl ")) for ln in lines), lines
