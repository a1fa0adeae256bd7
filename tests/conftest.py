"""Shared fixtures: a private SKYCTL_HOME per test, leak checks for processes, a probed
replica stand-in (``stub``)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.helpers.probed import ProbedServer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def skyctl_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh state directory; anything the test started there is stopped afterwards."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("SKYCTL_HOME", str(home))
    yield home
    from tests.helpers.processes import kill_leftovers

    kill_leftovers(home)


@pytest.fixture
def repo_root() -> Path:
    return ROOT


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("SKYCTL_LOG_LEVEL", "WARNING")


@pytest.fixture
async def stub() -> AsyncIterator[ProbedServer]:
    """A started :class:`ProbedServer`, stopped (and unblocked) after the test."""
    b = ProbedServer()
    await b.start()
    yield b
    b.hang.set()
    assert b.runner is not None
    await b.runner.cleanup()
