"""A test whose program is missing is skipped on a developer's machine and fails in CI."""

from __future__ import annotations

import re
from pathlib import Path

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


@pytest.mark.parametrize(
    ("config", "headers", "missing"),
    [("no-such-cc -pthread", True, "needs a C compiler (no-such-cc"), ("sh", False, "Python.h")],
    ids=["compiler", "headers"],
)
def test_the_compiled_router_needs_a_compiler_and_pythons_headers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, config: str, headers: bool, missing: str
) -> None:
    monkeypatch.delenv("CI", raising=False)
    include = tmp_path / "include"
    include.mkdir()
    if headers:
        (include / "Python.h").write_text("")
    monkeypatch.setattr(tools.sysconfig, "get_config_var", lambda name: config)
    monkeypatch.setattr(tools.sysconfig, "get_paths", lambda: {"include": str(include)})
    with pytest.raises(pytest.skip.Exception, match=re.escape(missing)):
        tools.require_c_compiler()
    (include / "Python.h").write_text("")
    if not headers:  # the compiler (sh) is there: with the headers nothing is missing
        tools.require_c_compiler()
