"""``serve logs NAME --events -f`` as a new user ends it: by `serve down` of the service."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyctl.cli_logs import _reattach
from skyctl.client import ControllerUnreachable
from skyctl.config import paths


def test_a_service_taken_down_is_gone_without_a_controller_went_away_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`serve down` of the last service ends the controller with it; the follower printed
    `(the controller went away: ... Connection refused ...; waiting for it)` before
    `(service NAME is gone)`, as if something had broken."""
    p = paths(tmp_path / "home")  # no service stored
    error = ControllerUnreachable("cannot reach the controller at http://127.0.0.1:9")
    assert _reattach(p, "http-server", error) is None
    assert capsys.readouterr().err == ""
