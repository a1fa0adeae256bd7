"""Checking that a value survives a trip through JSON unchanged.

Policy state is stored as JSON text; a value that JSON would silently change
(an int key turned into a str, NaN, a set) is refused up front with a
TypeError naming where it sits, instead of coming back different after a
controller restart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

#: Deeper nesting than this is refused (it also stops a self-referencing value).
MAX_DEPTH = 64


def check_json(value: Any, where: str, depth: int = 0) -> None:
    """Raise TypeError unless ``value`` is JSON (tuples are stored as lists)."""
    if depth > MAX_DEPTH:
        raise TypeError(f"{where}: nested deeper than {MAX_DEPTH} levels (a cycle?)")
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{where}: {value} is not valid JSON")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_json(item, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: key {key!r} is not a string")
            check_json(item, f"{where}.{key}", depth + 1)
        return
    raise TypeError(f"{where}: {type(value).__name__} is not JSON-serialisable")
