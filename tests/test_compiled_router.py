"""The compiled router (``SKYCTL_COMPILE=1``, mypyc) is the same router: it imports as
C extensions, and the router's test suite (but for the modules that start processes,
``PROCESS_LEVEL``) passes against it.

mypyc compiles the typed sources as they are, but a few Python idioms mean
something else once compiled (an exception variable reused across ``except``
clauses keeps its first type; a plain class attribute overridden in a
subclass is an instance default); running the suite compiled is what
catches them.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.compiled import ROOT, compiled_copy, is_compiled
from tests.helpers.tools import require_c_compiler

pytestmark = pytest.mark.timeout(900)

ROUTER_TESTS = sorted(p.name for p in (ROOT / "tests").glob("test_router*.py"))
# Router tests not run again compiled: they start router and controller processes, or
# drive the controller's update and recovery paths over minutes of real time, and
# every compiled module they reach is run in-process by the others. Run compiled,
# they cost CI about a minute and a half of its 15 (pure, they run as every test does).
PROCESS_LEVEL = {
    "test_router_process.py",
    "test_router_worker_metrics.py",
    "test_router_drain.py",
    "test_router_chaos_clock.py",
    "test_router_chaos_disk_full.py",
    "test_router_hostile_state_files.py",
    "test_router_peer14_watch_errors.py",
}
COMPILED_RUN = [name for name in ROUTER_TESTS if name not in PROCESS_LEVEL]


@pytest.fixture(scope="module")
def compiled_tree() -> Iterator[Path]:
    require_c_compiler()  # the default install and the rest of the suite need none
    with tempfile.TemporaryDirectory(prefix="skyctl-compiled-") as tmp:
        yield compiled_copy(Path(tmp), opt_level="0")  # behaviour, not speed: -O0 builds faster


def test_the_compiled_build_imports_the_router_as_extensions(compiled_tree: Path) -> None:
    assert is_compiled(compiled_tree)
    assert not is_compiled(ROOT)  # this checkout stays pure Python


def test_every_test_module_that_drives_the_router_runs_compiled_too() -> None:
    """A router test outside ``test_router*.py`` would silently skip the compiled run."""
    drives = ("tests.test_router_helpers", "from skyctl.router", "import skyctl.router")
    outside = [
        path.name
        for path in sorted((ROOT / "tests").glob("test_*.py"))
        if path.name not in [*ROUTER_TESTS, Path(__file__).name]
        and any(d in path.read_text() for d in drives)
    ]
    assert outside == [], f"rename to test_router_*.py: {outside}"


def test_the_process_level_exceptions_are_router_tests_still() -> None:
    """A renamed or removed module must not linger in the exceptions unnoticed."""
    assert PROCESS_LEVEL <= set(ROUTER_TESTS)


def test_the_router_test_suite_passes_against_the_compiled_router(compiled_tree: Path) -> None:
    assert len(COMPILED_RUN) >= 8
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        + [f"tests/{name}" for name in COMPILED_RUN],
        cwd=compiled_tree,
        capture_output=True,
        text=True,
        timeout=800,
        check=False,
    )
    tail = "\n".join(done.stdout.splitlines()[-30:])
    assert done.returncode == 0, tail
    assert " passed" in tail and "failed" not in tail


@pytest.fixture
def backend() -> Any:
    """The in-tree build backend (tools/skyctl_build.py), as pip loads it."""
    spec = importlib.util.spec_from_file_location("skyctl_build", ROOT / "tools/skyctl_build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_build_fetches_mypy_only_for_a_compiled_build(
    backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKYCTL_COMPILE", "1")
    assert any(r.startswith("mypy") for r in backend.get_requires_for_build_wheel())
    monkeypatch.setenv("SKYCTL_COMPILE", "0")
    monkeypatch.chdir(ROOT)
    assert not any(r.startswith("mypy") for r in backend.get_requires_for_build_wheel())


@pytest.mark.parametrize("value", ["yes", "true", "2", "on"])
def test_a_compile_setting_other_than_1_or_0_stops_the_build_with_one_line(
    backend: Any, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SKYCTL_COMPILE", value)
    with pytest.raises(SystemExit) as stopped:
        backend.get_requires_for_build_wheel()
    message = str(stopped.value)
    assert "\n" not in message
    assert "SKYCTL_COMPILE must be 1" in message and repr(value) in message


def test_an_editable_install_is_never_compiled(
    backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKYCTL_COMPILE", "1")
    with pytest.raises(SystemExit, match="not to an editable install"):
        backend.build_editable("/nonexistent")


def test_the_source_distribution_carries_the_build_backend(tmp_path: Path) -> None:
    """pyproject.toml names tools/ as the backend's path: an sdist without it cannot build."""
    subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=120,
    )
    (archive,) = tmp_path.glob("skyctl-*.tar.gz")
    with tarfile.open(archive) as sdist:
        names = sdist.getnames()
    assert any(n.endswith("/tools/skyctl_build.py") for n in names)
    assert any(n.endswith("/setup.py") for n in names)
