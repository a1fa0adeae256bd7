"""``skyctl router run`` refuses a ``--stop-grace`` that is no number of seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cli import run_cli


@pytest.mark.parametrize("grace", ["nan", "-1"])
def test_a_stop_grace_that_is_no_duration_is_a_usage_error(tmp_path: Path, grace: str) -> None:
    done = run_cli(
        tmp_path, "router", "run", "--controller", "http://127.0.0.1:1", "--stop-grace", grace
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: Invalid value for '--stop-grace'")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing started, nothing written
