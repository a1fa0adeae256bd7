"""Accelerators by memory: what ``24GB+``, ``40GB+:2`` or ``nvidia:24GB+:1`` mean.

SkyServe accepts an accelerator given by its memory instead of its name and
expands it to every device with that much memory (``+``: at least), optionally
of one manufacturer. :data:`MEMORY_GB` is our table of devices (names as the
clouds' catalogs spell them) with their memory per device in GB, from the
vendors' data sheets; :func:`devices_by_memory` does the expansion. Pure data,
no I/O.
"""

from __future__ import annotations

import re

__all__ = ["MEMORY_GB", "MEMORY_RE", "devices_by_memory", "parse_memory_accelerator"]

#: device -> (manufacturer, memory per device in GB)
MEMORY_GB: dict[str, tuple[str, float]] = {
    "K80": ("nvidia", 12),
    "P4": ("nvidia", 8),
    "P100": ("nvidia", 16),
    "T4": ("nvidia", 16),
    "V100": ("nvidia", 16),
    "V100-32GB": ("nvidia", 32),
    "A10": ("nvidia", 24),
    "A10G": ("nvidia", 24),
    "L4": ("nvidia", 24),
    "RTX4090": ("nvidia", 24),
    "RTX6000-Ada": ("nvidia", 48),
    "A40": ("nvidia", 48),
    "RTXA6000": ("nvidia", 48),
    "L40": ("nvidia", 48),
    "L40S": ("nvidia", 48),
    "A100": ("nvidia", 40),
    "A100-80GB": ("nvidia", 80),
    "H100": ("nvidia", 80),
    "H100-MEGA": ("nvidia", 80),
    "H200": ("nvidia", 141),
    "GH200": ("nvidia", 96),
    "B200": ("nvidia", 180),
    "MI210": ("amd", 64),
    "MI250": ("amd", 128),
    "MI300X": ("amd", 192),
    "Gaudi2": ("intel", 96),
}
_UNIT_GB = {"m": 1 / 1024, "g": 1.0, "t": 1024.0}
#: a memory size as an accelerator: 24GB, 24GB+, 512MB, 1TB+
MEMORY_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([MmGgTt])[Bb](\+?)")


def parse_memory_accelerator(text: str) -> tuple[str | None, float, bool, float] | None:
    """``[manufacturer:]<size>[+][:count]`` -> (manufacturer, GB, at_least, count).

    None when ``text`` is not a memory form (it then names a device).
    Raises ValueError for a malformed count.
    """
    parts = [p.strip() for p in text.split(":")]
    maker: str | None = None
    count = "1"
    if len(parts) == 3:
        maker, size, count = parts
    elif len(parts) == 2 and MEMORY_RE.fullmatch(parts[0]):
        size, count = parts
    elif len(parts) == 2:
        maker, size = parts
    elif len(parts) == 1:
        size = parts[0]
    else:
        return None
    m = MEMORY_RE.fullmatch(size)
    if m is None:
        if len(parts) == 3:
            raise ValueError(
                f"{text!r}: with a manufacturer, give a memory size such as nvidia:24GB+:1"
            )
        return None
    try:
        number = float(count)
    except ValueError:
        raise ValueError(f"invalid accelerator count in {text!r}") from None
    gb = float(m.group(1)) * _UNIT_GB[m.group(2).lower()]
    return (maker.lower() if maker else None), gb, bool(m.group(3)), number


def devices_by_memory(gb: float, at_least: bool, maker: str | None = None) -> list[str]:
    """The devices with ``gb`` of memory (or more, with ``at_least``), smallest first."""
    found = [
        (memory, name)
        for name, (vendor, memory) in MEMORY_GB.items()
        if (maker is None or vendor == maker)
        and (memory >= gb - 1e-9 if at_least else abs(memory - gb) < 1e-9)
    ]
    return [name for _, name in sorted(found)]
