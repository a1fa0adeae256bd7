"""`serve status` on a terminal narrower than its tables, as a new user's 80 columns are:
the endpoint and every other cell stay whole (the line wraps), so a copied URL works."""

from __future__ import annotations

import pytest

from tests.test_cli_status import render


@pytest.fixture(autouse=True)
def _colour(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)


def test_a_narrow_terminal_keeps_the_endpoint_whole() -> None:
    """At 80 columns the endpoint was folded over three lines (`http://1`, `27.0.0.1`,
    `:34833`), and at 120 still over two."""
    for columns in ("80", "120"):
        out = render(FORCE_COLOR="1", COLUMNS=columns)
        assert "http://127.0.0.1:30001" in out, out
        assert "aws/us-east-1/us-east-1a" in out and "g5.xlarge (spot)" in out
