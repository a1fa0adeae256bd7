"""Real spot-availability traces: loading and a normalised, immutable model.

A :class:`Trace` is a step function per zone: the value of tick ``i`` holds
from ``start + i * gap_seconds`` to ``start + (i + 1) * gap_seconds``. Every
loader normalises to one convention: ``available[i] is True`` means a spot
instance could be obtained and kept in that zone during tick ``i``.

Three on-disk layouts are read (a folder, or a ``.tar.*``/``.zip`` archive of
one; ``archive#sub/folder`` picks a folder inside an archive):

- AWS (``availability/<zone>_<type>.csv`` with ``date,availability``,
  **1 = available**, optional ``spot_prices.json`` ``{"<file stem>": [price
  per tick]}``);
- GCP (``zones/<zone>.json`` with ``{"metadata": {...}, "data": [...]}``,
  **1 = preempted/unavailable**, prices in ``metadata.price_info``);
- counts (``<zone>_<type>.json`` directly in the folder, ``{"metadata":
  {"gap_seconds"}, "data": [count per tick]}``, available = count > 0, and
  the count is a **capacity cap**: at most that many spot instances can run
  in the zone during the tick, as the SkyServe authors' simulator treats it).

An optional ``trace.json`` in a folder (our own) may set ``ondemand_price``,
``gap_seconds`` and ``start`` where the data does not carry them. Zones of
unequal length are cut to the shortest, so every zone has ``ticks`` values.

Every trace has a known on-demand price (USD/h): from ``trace.json``, the
zones' metadata, the bundled table (the catalog's price for the instance the
trace measured), or the ``ondemand_price`` argument. A trace with none is a
ConfigError saying what to pass: cost figures against $0 would be silently wrong.

Bundled traces (``skyctl/data/traces``, Apache-2.0, SkyNomad artifact; see the
LICENSE and NOTICE there) load by name: see :func:`bundled_traces`. Pure: no
I/O besides reading trace files, no clock.
"""

from __future__ import annotations

import errno
import functools
import math
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from skyctl.errors import ConfigError
from skyctl.sim_limits import MAX_PRICE

__all__ = [
    "DEFAULT_SPOT_DISCOUNT",
    "MAX_PRICE",
    "Trace",
    "ZoneTrace",
    "bundled_traces",
    "load_trace",
    "region_of",
]

DATA_DIR = Path(__file__).parent / "data" / "traces"

#: spot price as a share of on-demand when a trace carries no spot price
DEFAULT_SPOT_DISCOUNT = 0.3

# name -> (archive in DATA_DIR, folder inside it, on-demand USD/h when the data lacks it)
_BUNDLED: dict[str, tuple[str, str, float | None]] = {
    "aws-v100-2023-02": ("aws-v100-2023-02.tar.xz", "aws-v100-2023-02", 3.06),
    "gcp-h100-2025-10": ("gcp-h100-2025-10.tar.xz", "gcp-h100-2025-10", None),
    "aws-v100-multinode-2023-08/16-nodes": (
        "aws-v100-multinode-2023-08.tar.xz",
        "aws-v100-multinode-2023-08/16-nodes",
        3.06,
    ),
    "aws-v100-multinode-2023-08/4-nodes-real-preemption": (
        "aws-v100-multinode-2023-08.tar.xz",
        "aws-v100-multinode-2023-08/4-nodes-real-preemption",
        3.06,
    ),
}
# folder basename -> on-demand price, for the same data loaded from a path
_KNOWN_ONDEMAND = {
    posixpath.basename(folder): od for _, folder, od in _BUNDLED.values() if od is not None
}
_KNOWN_ONDEMAND.update({"16-nodes": 3.06, "4-nodes-real-preemption": 3.06})


def region_of(zone: str) -> str:
    """The region of a zone name: ``us-east-1a`` -> ``us-east-1`` (AWS),
    ``us-central1-a`` -> ``us-central1`` (GCP); otherwise the name itself."""
    m = re.fullmatch(r"(.+)-[a-z]", zone)
    if m:
        return m.group(1)
    m = re.fullmatch(r"(.+\d)[a-z]", zone)
    if m:
        return m.group(1)
    return zone


@dataclass(frozen=True)
class ZoneTrace:
    zone: str  # "us-east-1a", "us-central1-a"
    region: str  # "us-east-1", "us-central1" (derived from the zone name)
    available: tuple[bool, ...]  # per tick, True = spot obtainable/kept
    spot_price: tuple[float, ...] | float | None  # per tick (AWS), constant (GCP), or None
    ondemand_price: float | None
    # per tick, at most this many spot instances at once (count traces); None: unlimited
    capacity: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Trace:
    name: str
    start: float  # epoch seconds of tick 0
    gap_seconds: float
    zones: tuple[ZoneTrace, ...]
    ondemand_price: float  # USD/h, > 0 (a trace without one cannot be loaded)
    notes: tuple[str, ...] = ()  # what the loader changed (zones cut to one length), to show

    def __post_init__(self) -> None:
        if not self.zones:
            raise ValueError(f"trace {self.name!r} has no zones")
        if not 0 < self.ondemand_price < math.inf:
            raise ValueError(f"trace {self.name!r}: ondemand_price must be > 0")
        if not 0 < self.gap_seconds < math.inf:
            raise ValueError(f"trace {self.name!r}: gap_seconds must be > 0")
        if not 0 <= self.start < math.inf:  # policies' clocks start at 1970 (0.0 = "none")
            raise ValueError(f"trace {self.name!r}: start must be finite epoch seconds >= 0")
        n = len(self.zones[0].available)
        for z in self.zones:
            if len(z.available) != n:
                raise ValueError(f"trace {self.name!r}: zone {z.zone} has a different length")
            if isinstance(z.spot_price, tuple) and len(z.spot_price) != n:
                raise ValueError(f"trace {self.name!r}: zone {z.zone} prices misaligned")
            if z.capacity is not None and len(z.capacity) != n:
                raise ValueError(f"trace {self.name!r}: zone {z.zone} capacity misaligned")

    @property
    def ticks(self) -> int:
        return len(self.zones[0].available)

    @property
    def duration_seconds(self) -> float:
        return self.ticks * self.gap_seconds

    def zone_names(self) -> tuple[str, ...]:
        return tuple(z.zone for z in self.zones)

    def zone_index(self, zone: str) -> int:
        for i, z in enumerate(self.zones):
            if z.zone == zone:
                return i
        raise ConfigError(
            f"trace {self.name!r} has no zone {zone!r}; zones: {', '.join(self.zone_names())}"
        )

    def is_available(self, zone_index: int, tick: int) -> bool:
        """Availability at ``tick`` (taken modulo ``ticks``: replays wrap around)."""
        return self.zones[zone_index].available[tick % self.ticks]

    def spot_price(self, zone_index: int, tick: int) -> float:
        """Spot USD/h at ``tick`` (modulo ``ticks``). A zone without a spot price
        costs ``DEFAULT_SPOT_DISCOUNT`` of its (or the trace's) on-demand price."""
        z = self.zones[zone_index]
        if isinstance(z.spot_price, tuple):
            return z.spot_price[tick % self.ticks]
        if z.spot_price is not None:
            return z.spot_price
        return DEFAULT_SPOT_DISCOUNT * self.zone_ondemand_price(zone_index)

    def zone_ondemand_price(self, zone_index: int) -> float:
        od = self.zones[zone_index].ondemand_price
        return od if od is not None else self.ondemand_price

    def tick_at(self, t: float) -> int:
        """The (unwrapped) tick covering epoch time ``t``."""
        return int((t - self.start) // self.gap_seconds)

    def availability_matrix(self) -> list[tuple[bool, ...]]:
        """Per zone, its availability tuple (shared, not copied): for fast loops."""
        return [z.available for z in self.zones]

    def spot_price_matrix(self) -> list[tuple[float, ...]]:
        """Per zone, its spot price at every tick (constant prices expanded)."""
        out = []
        for i, z in enumerate(self.zones):
            if isinstance(z.spot_price, tuple):
                out.append(z.spot_price)
            else:
                out.append((self.spot_price(i, 0),) * self.ticks)
        return out

    def capacity_matrix(self) -> list[tuple[int, ...] | None]:
        """Per zone, its per-tick spot capacity cap (None: unlimited while available)."""
        return [z.capacity for z in self.zones]

    def availability_fraction(self, zone_index: int) -> float:
        a = self.zones[zone_index].available
        return sum(a) / len(a)

    def at_least_available(self, k: int) -> float:
        """Share of ticks with at least ``k`` zones available."""
        counts = [sum(col) for col in zip(*self.availability_matrix(), strict=True)]
        return sum(1 for c in counts if c >= k) / self.ticks

    def window(self, start_tick: int, ticks: int) -> Trace:
        """Ticks ``[start_tick, start_tick + ticks)`` as a trace of their own."""
        if start_tick < 0 or ticks < 1 or start_tick + ticks > self.ticks:
            raise ValueError(
                f"window [{start_tick}, {start_tick + ticks}) is outside trace "
                f"{self.name!r} of {self.ticks} ticks"
            )
        end = start_tick + ticks
        zones = tuple(
            replace(
                z,
                available=z.available[start_tick:end],
                spot_price=(
                    z.spot_price[start_tick:end]
                    if isinstance(z.spot_price, tuple)
                    else z.spot_price
                ),
                capacity=z.capacity[start_tick:end] if z.capacity is not None else None,
            )
            for z in self.zones
        )
        return replace(self, start=self.start + start_tick * self.gap_seconds, zones=zones)

    def select(self, zones: Sequence[str]) -> Trace:
        """Only the named zones, in the order given (ConfigError for an unknown one)."""
        if not zones:
            return self
        return replace(self, zones=tuple(self.zones[self.zone_index(z)] for z in zones))


def bundled_traces() -> list[str]:
    """Names :func:`load_trace` accepts without a path."""
    return sorted(_BUNDLED)


def load_trace(
    name_or_path: str, *, base_dir: str | None = None, ondemand_price: float | None = None
) -> Trace:
    """A bundled trace by name, or a trace folder/archive by path (absolute, or
    relative to ``base_dir``, else to the working directory). ``ondemand_price``
    (USD/h) applies where the trace does not carry one (see the module docstring)."""
    if ondemand_price is not None and not 0 < ondemand_price <= MAX_PRICE:
        raise ConfigError(
            f"ondemand_price {ondemand_price!r}: must be > 0, at most {MAX_PRICE:,.0f} "
            "(USD per hour)"
        )
    if name_or_path in _BUNDLED:
        return _load_bundled(name_or_path)
    text, _, member = name_or_path.partition("#")
    if member and Path(name_or_path).expanduser().exists():
        text, member = name_or_path, ""  # a '#' in the path itself
    path = Path(text).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    try:
        path.stat()
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        if getattr(e, "errno", None) == errno.ELOOP:
            raise ConfigError(f"trace {name_or_path!r}: a symlink loop ({path})") from None
        raise ConfigError(
            f"trace {name_or_path!r}: not a bundled trace and no such file or folder "
            f"({path}); bundled: {', '.join(bundled_traces())}"
        ) from None
    return _load_path(path, member.strip("/"), ondemand_price)


@functools.cache
def _load_bundled(name: str) -> Trace:
    archive, folder, od = _BUNDLED[name]
    return _load_path(DATA_DIR / archive, folder, od, name=name)


def _load_path(path: Path, member: str, ondemand: float | None, *, name: str = "") -> Trace:
    from skyctl import trace_formats as fmt  # imports this module's model
    from skyctl.trace_files import TraceError, open_files

    with open_files(path) as files:
        folder = member
        if folder and folder not in files.folders():
            raise TraceError(str(path), f"no folder {folder!r} inside")
        if fmt.kind_of(files, folder) is None:
            inside = [f for f in files.folders() if not folder or f.startswith(f"{folder}/")]
            found = sorted(f for f in inside if fmt.kind_of(files, f))
            found = [f for f in found if not any(f.startswith(g + "/") for g in found)]
            if len(found) != 1:
                what = (
                    f"several traces ({', '.join(found)}); pick one with '#<folder>'"
                    if found
                    else f"no trace data; expected {fmt.LAYOUTS}"
                )
                raise TraceError(str(path / folder) if folder else str(path), what)
            folder = found[0]
        label = name or posixpath.basename(folder) or re.sub(r"(\.tar)?\.\w+$", "", path.name)
        base = posixpath.basename(folder) if folder else label
        return fmt.parse(files, folder, label, ondemand, _KNOWN_ONDEMAND.get(base))
