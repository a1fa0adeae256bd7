"""A test whose program is missing is skipped on a developer's machine and fails in CI."""

from __future__ import annotations

import pytest

from tests.helpers import tools

ABSENT = "skyctl-no-such-program"


def test_a_missing_program_skips_with_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=f"apt-get install -y {ABSENT}-pkg"):
        tools.require(ABSENT, f"{ABSENT}-pkg")


def test_a_missing_program_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run this test"):
        tools.require(ABSENT, "pkg")


def test_a_present_program_is_its_path() -> None:
    assert tools.require("sh", "dash").endswith("/sh")
