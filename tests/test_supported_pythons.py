"""The Python versions skyctl claims agree everywhere, and the checkers use the lowest.

setup.cfg's ``python_requires`` is the claim; ruff's ``target-version`` and
mypy's ``python_version`` must name its lower bound, so a feature newer than
it (``asyncio.timeout`` is 3.11+) fails the checks instead of a user's install;
the README says the same.
"""

from __future__ import annotations

import configparser
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def lowest_claimed() -> tuple[int, int]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    match = re.fullmatch(r">=\s*3\.(\d+)", cfg["options"]["python_requires"].strip())
    assert match, "python_requires should be a single lower bound, >=3.N"
    return 3, int(match.group(1))


def test_ruff_mypy_and_the_readme_name_the_lowest_python_claimed() -> None:
    major, minor = lowest_claimed()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["ruff"]["target-version"] == f"py{major}{minor}"
    assert pyproject["tool"]["mypy"]["python_version"] == f"{major}.{minor}"
    assert f"Python {major}.{minor}+" in (ROOT / "README.md").read_text()


def test_this_interpreter_is_one_skyctl_claims() -> None:
    assert sys.version_info[:2] >= lowest_claimed()
