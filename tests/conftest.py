"""Shared fixtures: a private SKYCTL_HOME per test, leak checks for processes, a probed
replica stand-in (``stub``).

A run stopped by SIGTERM (``timeout``, a CI runner cancelling a job) cleans up as
one stopped by Ctrl-C: the first SIGTERM becomes a KeyboardInterrupt, so pytest
runs the fixtures' teardowns (``skyctl_home`` stops what its test started), and
at the end of the session every process still tied to the session's temporary
directory (a daemon under any SKYCTL_HOME made there) is stopped. Without
this, the supervisors, controllers and routers of a killed run live on: they
run in their own sessions, out of reach of the signal.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import pytest

from tests.helpers.probed import ProbedServer

if TYPE_CHECKING:
    from tests.test_controller import Harness

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    """A controller over the fake provider (``tests/test_controller.py``'s
    :class:`Harness`), started, and closed after the test."""
    from tests.test_controller import Harness

    harness = Harness(tmp_path)
    await harness.start()
    yield harness
    await harness.close()


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
    if sys.dont_write_bytecode and not hasattr(config, "workerinput"):
        _compile_packages()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt_once)
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            # a run started as a background job (`cmd &` in a script, nohup) ignores
            # SIGINT, and so would every process it starts: the tests that press
            # Ctrl-C on a CLI (SIGINT) would wait on a command that cannot hear it
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _compile_packages() -> None:
    """Bytecode for the packages every process the tests start imports. Where
    PYTHONDONTWRITEBYTECODE is set (python images, this machine) no process writes it,
    so each CLI, controller, router and supervisor compiled every module it imports
    from source: a third of a ``skyctl --help``'s CPU, a fifth of a controller's
    (benchmarks/startup.py). Once here (about 1 s; nothing to do when up to date)."""
    import compileall

    for package in ("skyctl", "providers", "policies"):
        compileall.compile_dir(ROOT / package, quiet=1)


# The longest modules (measured: `pytest --durations=30`), each at the head of one
# pytest-xdist worker's first batch: collected in name order, they ran last and kept
# one worker busy for minutes while the others idled (a 14-minute CI run had a tail
# of about 5).
SLOW_FIRST = (
    "tests/test_compiled_router.py",  # builds the router with mypyc, then runs its tests
    "tests/test_quality.py",  # mypy over the project
    "tests/test_skyserve_smoke.py",
    "tests/test_skyserve_smoke_more.py",
    "tests/test_cli_down.py",
    "tests/test_e2e_local.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put the ``SLOW_FIRST`` modules, whole (module fixtures stay shared), where
    pytest-xdist's load scheduler starts each worker's first batch of consecutive
    tests (a quarter of its share); without xdist, first. The rest keep their order."""
    groups: dict[str, list[pytest.Item]] = {module: [] for module in SLOW_FIRST}
    rest: list[pytest.Item] = []
    for item in items:
        groups.get(item.nodeid.split("::", 1)[0], rest).append(item)
    workers = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), 1)
    heads: list[list[pytest.Item]] = [[] for _ in range(workers)]
    for i, group in enumerate(g for g in groups.values() if g):
        heads[i % workers].extend(group)
    batch = max(len(items) // workers // 4, 2)
    left = iter(rest)
    ordered: list[pytest.Item] = []
    for head in heads:
        ordered += head
        ordered += itertools.islice(left, max(batch - len(head), 0))
    ordered += left
    assert len(ordered) == len(items)
    items[:] = ordered


def _interrupt_once(signum: int, frame: FrameType | None) -> None:
    """The first SIGTERM interrupts the run as Ctrl-C does; later ones are ignored
    so they cannot cut the teardowns short (``timeout -k`` still ends a stuck one)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop every process tied to this session's temporary directory (under
    pytest-xdist the controller's holds each worker's)."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    basetemp = getattr(factory, "_basetemp", None) if factory is not None else None
    if basetemp is not None:
        from tests.helpers.processes import kill_under

        kill_under(Path(basetemp))


@pytest.fixture
async def stub() -> AsyncIterator[ProbedServer]:
    """A started :class:`ProbedServer`, stopped (and unblocked) after the test."""
    b = ProbedServer()
    await b.start()
    yield b
    b.hang.set()
    assert b.runner is not None
    await b.runner.cleanup()
