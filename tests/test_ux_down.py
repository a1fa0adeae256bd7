"""``serve down`` read in a pipe or a log, as a new user meets it."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from skyctl.cli_down_progress import DownProgress


def test_a_service_with_no_replica_left_says_so_in_plain_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A FAILED service (no live replica) printed `bug: 0 replica(s) still terminating
    (none)`; the terminal table said `releasing resources` for the same state."""
    pipe = Console(file=io.StringIO(), force_terminal=False)
    with DownProgress(["bug"], console=pipe) as progress:
        progress.show("bug", [{"id": 1, "status": "SHUTTING_DOWN"}])
        progress.show("bug", [])
        progress.show("bug", [])
        progress.done("bug", ok=True)
    assert capsys.readouterr().out.splitlines() == [
        "  bug: 1 replica(s) still terminating (replica 1 SHUTTING_DOWN)",
        "  bug: no replica left; releasing resources",
    ]
