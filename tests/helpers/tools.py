"""Tests that need a program the test dependencies do not bring (a browser, wrk).

On a developer's machine without it such a test is skipped, saying what to
install; under ``CI`` (``.ci/run`` sets it, and installs every such program)
it fails instead: a CI run never skips one silently.
"""

from __future__ import annotations

import os
import shutil
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
