"""Build script: metadata lives in setup.cfg; this only adds the optional compiled router.

With ``SKYCTL_COMPILE=1`` the modules listed under ``[skyctl.compile]`` in
setup.cfg are compiled to C extensions with mypyc (the in-tree build backend,
``tools/skyctl_build.py``, fetches mypy for the build); without it nothing
is compiled and the package is pure Python.
"""

from __future__ import annotations

import configparser
import os
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tools"))
from skyctl_build import compile_requested  # noqa: E402  (the one reading of SKYCTL_COMPILE)


def compiled_modules() -> list[str]:
    """The source files the compiled build turns into extensions (setup.cfg)."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config["skyctl.compile"]["modules"].split()


def ext_modules() -> list[object]:
    if not compile_requested():
        return []
    from mypyc.build import mypycify  # present in the build environment (see above)

    # MYPYC_OPT_LEVEL: the C compiler's -O (3 unless set; the test suite's build uses 0)
    return list(mypycify(compiled_modules(), opt_level=os.environ.get("MYPYC_OPT_LEVEL", "3")))


setup(ext_modules=ext_modules())
