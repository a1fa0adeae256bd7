"""Tests that need a program the test dependencies do not bring (a browser, wrk).

On a developer's machine without it such a test is skipped, saying what to
install; under ``CI`` (``.ci/run`` sets it, and installs every such program)
it fails instead: a CI run never skips one silently.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
from pathlib import Path
from typing import NoReturn

import pytest


def missing(why: str) -> NoReturn:
    """Skip with ``why``, or fail with it under CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{why}: CI must run this test")
    pytest.skip(why)


def require(program: str, package: str) -> str:
    """The path of ``program`` (from the Debian package ``package``), or :func:`missing`."""
    path = shutil.which(program)
    if path is None:
        missing(f"needs {program} (apt-get install -y {package}; .ci/run installs it)")
    return path


def require_c_compiler() -> None:
    """The compiled router's build needs the C compiler Python was built with and its
    headers (``apt-get install -y gcc python3-dev``), else :func:`missing`."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        missing(f"needs a C compiler ({cc}: apt-get install -y gcc; .ci/run installs it)")
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():
        missing("needs Python's headers (Python.h: apt-get install -y python3-dev)")
