"""skyctl's PEP 517 build backend: setuptools, plus mypy when the router is compiled.

``SKYCTL_COMPILE=1 pip install .`` compiles the router's hot path with mypyc
(setup.py); the build then needs mypy, which this backend adds to the build
requirements only in that case, so a plain install fetches nothing more.
An editable install is never compiled: the extensions would shadow the very
sources being edited.
"""

from __future__ import annotations

import os
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import (  # noqa: F401  (the rest of the backend interface)
    build_sdist,
    build_wheel,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

MYPYC = "mypy>=1.10"


def compile_requested() -> bool:
    """``SKYCTL_COMPILE``: 1 compiles the router, 0 or unset does not; anything else
    stops the build with one line (a typo must not pass for a plain build)."""
    value = os.environ.get("SKYCTL_COMPILE", "").strip()
    if value not in ("", "0", "1"):
        raise SystemExit(
            f"skyctl: SKYCTL_COMPILE must be 1 (compile the router) or 0, got {value!r}"
        )
    return value == "1"


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    if compile_requested():  # setup.py needs mypyc even to be read, so it is not asked here
        return ["wheel", MYPYC]
    return list(_setuptools.get_requires_for_build_wheel(config_settings))


def build_editable(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    if compile_requested():
        raise SystemExit(
            "skyctl: SKYCTL_COMPILE=1 applies to `pip install .`, not to an editable install "
            "(compiled modules would shadow the sources you edit); unset it or drop -e"
        )
    return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
