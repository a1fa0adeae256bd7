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


def options_without_help(group: click.Group) -> list[str]:
    out = []
    for path in commands(group):
        cmd: click.Command = group
        for name in path:
            assert isinstance(cmd, click.Group)
            cmd = cmd.commands[name]
        for param in cmd.params:
            if isinstance(param, click.Option) and not param.hidden and not param.help:
                out.append(f"{' '.join(path)} {param.opts[-1]}")
    return out


def test_every_option_says_what_it_does() -> None:
    # `serve cost -o` and `controller run --port` had no help text (sim's are its own module's)
    assert [o for o in options_without_help(cli) if not o.startswith("sim ")] == []
