"""The compiled router (``SKYCTL_COMPILE=1``, mypyc) is the same router: it imports as
C extensions, and the router's whole test suite passes against it.

mypyc compiles the typed sources as they are, but a few Python idioms mean
something else once compiled (an exception variable reused across ``except``
clauses keeps its first type; a plain class attribute overridden in a
subclass is an instance default); running the suite compiled is what
catches them.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.compiled import ROOT, compiled_copy, is_compiled

pytestmark = pytest.mark.timeout(900)

ROUTER_TESTS = sorted(p.name for p in (ROOT / "tests").glob("test_router*.py"))


@pytest.fixture(scope="module")
def compiled_tree() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="skyctl-compiled-") as tmp:
        yield compiled_copy(Path(tmp))


def test_the_compiled_build_imports_the_router_as_extensions(compiled_tree: Path) -> None:
    assert is_compiled(compiled_tree)
    assert not is_compiled(ROOT)  # this checkout stays pure Python


def test_the_router_test_suite_passes_against_the_compiled_router(compiled_tree: Path) -> None:
    assert len(ROUTER_TESTS) >= 8
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        + [f"tests/{name}" for name in ROUTER_TESTS],
        cwd=compiled_tree,
        capture_output=True,
        text=True,
        timeout=800,
        check=False,
    )
    tail = "\n".join(done.stdout.splitlines()[-30:])
    assert done.returncode == 0, tail
    assert " passed" in tail and "failed" not in tail


def _backend() -> object:
    import importlib.util

    spec = importlib.util.spec_from_file_location("skyctl_build", ROOT / "tools/skyctl_build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_build_fetches_mypy_only_for_a_compiled_build(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = _backend()
    monkeypatch.setenv("SKYCTL_COMPILE", "1")
    assert any(r.startswith("mypy") for r in backend.get_requires_for_build_wheel())  # type: ignore[attr-defined]
    monkeypatch.delenv("SKYCTL_COMPILE")
    monkeypatch.chdir(ROOT)
    assert not any(r.startswith("mypy") for r in backend.get_requires_for_build_wheel())  # type: ignore[attr-defined]


def test_an_editable_install_is_never_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYCTL_COMPILE", "1")
    with pytest.raises(SystemExit, match="not to an editable install"):
        _backend().build_editable("/nonexistent")  # type: ignore[attr-defined]
