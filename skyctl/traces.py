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

import contextlib
import csv
import functools
import io
import itertools
import json
import posixpath
import re
import statistics
import tarfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from skyctl.errors import ConfigError

__all__ = [
    "DEFAULT_SPOT_DISCOUNT",
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

    def __post_init__(self) -> None:
        if not self.zones:
            raise ValueError(f"trace {self.name!r} has no zones")
        if not self.ondemand_price > 0:
            raise ValueError(f"trace {self.name!r}: ondemand_price must be > 0")
        if self.gap_seconds <= 0:
            raise ValueError(f"trace {self.name!r}: gap_seconds must be > 0")
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
    if ondemand_price is not None and not ondemand_price > 0:
        raise ConfigError(f"ondemand_price {ondemand_price!r}: must be > 0 (USD per hour)")
    if name_or_path in _BUNDLED:
        return _load_bundled(name_or_path)
    text, _, member = name_or_path.partition("#")
    path = Path(text).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if not path.exists():
        raise ConfigError(
            f"trace {name_or_path!r}: not a bundled trace and no such file or folder "
            f"({path}); bundled: {', '.join(bundled_traces())}"
        )
    return _load_path(path, member.strip("/"), ondemand_price)


@functools.cache
def _load_bundled(name: str) -> Trace:
    archive, folder, od = _BUNDLED[name]
    return _load_path(DATA_DIR / archive, folder, od, name=name)


# ---------------------------------------------------------------- file access


class _Files:
    """Read-only view of a folder or an archive: posix relative paths -> bytes."""

    def __init__(self, names: list[str], read: Callable[[str], bytes]) -> None:
        self.names = names
        self.read = read

    def listdir(self, folder: str) -> list[str]:
        """File names directly inside ``folder`` ("" = the root), sorted."""
        prefix = f"{folder}/" if folder else ""
        return sorted(
            n[len(prefix) :]
            for n in self.names
            if n.startswith(prefix) and "/" not in n[len(prefix) :]
        )

    def folders(self) -> set[str]:
        out = {""}
        for n in self.names:
            parts = n.split("/")[:-1]
            out.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        return out


@contextlib.contextmanager
def _open_files(path: Path) -> Iterator[_Files]:
    if path.is_dir():
        names = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
        yield _Files(names, lambda n: (path / n).read_bytes())
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            yield _Files([n for n in zf.namelist() if not n.endswith("/")], zf.read)
    elif tarfile.is_tarfile(path):
        with tarfile.open(path) as tf:
            members = {m.name.removeprefix("./"): m for m in tf.getmembers() if m.isfile()}

            def read(n: str) -> bytes:
                f = tf.extractfile(members[n])
                assert f is not None
                return f.read()

            yield _Files(sorted(members), read)
    else:
        raise ConfigError(f"trace {path}: not a folder, a tar archive or a zip archive")


def _kind(files: _Files, folder: str) -> str | None:
    prefix = f"{folder}/" if folder else ""
    if any(n.endswith(".csv") for n in files.listdir(prefix + "availability")):
        return "aws"
    if any(n.endswith(".json") for n in files.listdir(prefix + "zones")):
        return "gcp"
    if any(n.endswith(".json") and n != "trace.json" for n in files.listdir(folder)):
        return "counts"
    return None


def _load_path(path: Path, member: str, ondemand: float | None, *, name: str = "") -> Trace:
    with _open_files(path) as files:
        folder = member
        if folder and folder not in files.folders():
            raise ConfigError(f"trace {path}: no folder {folder!r} inside")
        if _kind(files, folder) is None:
            inside = [f for f in files.folders() if not folder or f.startswith(f"{folder}/")]
            found = sorted(f for f in inside if _kind(files, f))
            found = [f for f in found if not any(f.startswith(g + "/") for g in found)]
            if len(found) != 1:
                what = f"several traces ({', '.join(found)}); pick one with '#<folder>'"
                raise ConfigError(
                    f"trace {path}: {what if found else 'no availability/, zones/ or *.json data'}"
                )
            folder = found[0]
        label = name or posixpath.basename(folder) or re.sub(r"(\.tar)?\.\w+$", "", path.name)
        try:
            return _parse(files, folder, label, ondemand)
        except (KeyError, ValueError, TypeError, IndexError, csv.Error) as exc:
            raise ConfigError(f"trace {path}: malformed data ({exc})") from exc


# ---------------------------------------------------------------- parsers


def _parse(files: _Files, folder: str, label: str, ondemand: float | None) -> Trace:
    prefix = f"{folder}/" if folder else ""
    extra: dict[str, Any] = {}
    if "trace.json" in files.listdir(folder):
        extra = json.loads(files.read(prefix + "trace.json"))
    base = posixpath.basename(folder) if folder else label
    known = extra.get(
        "ondemand_price", ondemand if ondemand is not None else _KNOWN_ONDEMAND.get(base)
    )
    kind = _kind(files, folder)
    if kind == "aws":
        start, gap, zones = _parse_aws(files, prefix)
    elif kind == "gcp":
        start, gap, zones = _parse_json_zones(files, prefix + "zones", gcp=True)
    else:
        start, gap, zones = _parse_json_zones(files, folder, gcp=False)
    start = float(extra.get("start", start))
    gap = float(extra.get("gap_seconds", gap))
    n = min(len(z.available) for z in zones)
    zones = [_truncate(z, n) for z in zones]
    if known is None:
        zone_od = [z.ondemand_price for z in zones if z.ondemand_price is not None]
        known = min(zone_od) if zone_od else None
    if known is None or not float(known) > 0:
        raise ConfigError(
            f"trace {label!r} carries no on-demand price: pass --ondemand-price USD_PER_HOUR "
            f'(ondemand_price= in Python) or put {{"ondemand_price": USD_PER_HOUR}} in a '
            f"trace.json beside its data"
        )
    return Trace(label, start, gap, tuple(zones), float(known))


def _truncate(z: ZoneTrace, n: int) -> ZoneTrace:
    if len(z.available) == n:
        return z
    price = z.spot_price[:n] if isinstance(z.spot_price, tuple) else z.spot_price
    cap = z.capacity[:n] if z.capacity is not None else None
    return replace(z, available=z.available[:n], spot_price=price, capacity=cap)


def _epoch(text: str) -> float:
    dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)  # the AWS traces are in UTC
    return dt.timestamp()


def _flag(value: str | int | float) -> int:
    v = float(value)
    if v < 0:
        raise ValueError(f"negative value {value!r}")
    return int(v)


def _parse_aws(files: _Files, prefix: str) -> tuple[float, float, list[ZoneTrace]]:
    prices: dict[str, list[float]] = {}
    if "spot_prices.json" in files.listdir(prefix.rstrip("/")):
        prices = json.loads(files.read(prefix + "spot_prices.json"))
    zones: list[ZoneTrace] = []
    start = 0.0
    gap = 0.0
    for fname in files.listdir(prefix + "availability"):
        if not fname.endswith(".csv"):
            continue
        stem = fname[: -len(".csv")]
        text = files.read(f"{prefix}availability/{fname}").decode()
        rows = list(csv.DictReader(io.StringIO(text)))
        if not rows or "availability" not in rows[0]:
            raise ValueError(f"{fname}: expected columns date,availability")
        available = tuple(_flag(r["availability"]) == 1 for r in rows)  # 1 = available
        if not zones and "date" in rows[0]:
            times = [_epoch(r["date"]) for r in rows]
            start = times[0]
            diffs = [b - a for a, b in itertools.pairwise(times)]
            gap = float(round(statistics.median(diffs))) if diffs else 0.0
        price: tuple[float, ...] | None = None
        if stem in prices:
            price = tuple(float(p) for p in prices[stem])
            if len(price) != len(available):
                raise ValueError(
                    f"spot_prices.json[{stem!r}] has {len(price)} values, not {len(rows)}"
                )
        zone = stem.split("_")[0]
        zones.append(ZoneTrace(zone, region_of(zone), available, price, None))
    return start, gap, zones


def _parse_json_zones(
    files: _Files, folder: str, *, gcp: bool
) -> tuple[float, float, list[ZoneTrace]]:
    zones: list[ZoneTrace] = []
    start = 0.0
    gap = 0.0
    prefix = f"{folder}/" if folder else ""
    for fname in files.listdir(folder):
        if not fname.endswith(".json") or fname == "trace.json":
            continue
        doc = json.loads(files.read(prefix + fname))
        meta = doc.get("metadata") or {}
        if not gcp and "price_info" in meta:
            raise ValueError(
                f"{fname} looks like a GCP zone file (1 = unavailable): "
                "load the folder holding zones/"
            )
        data = doc["data"]
        capacity: tuple[int, ...] | None = None
        if gcp:
            available = tuple(_flag(v) == 0 for v in data)  # GCP: 1 = preempted/unavailable
        else:
            capacity = tuple(_flag(v) for v in data)  # counts: a cap on concurrent spot
            available = tuple(c > 0 for c in capacity)
        if not zones:
            gap = float(meta.get("gap_seconds", 0.0))
            start = _epoch(meta["start_time"]) if "start_time" in meta else 0.0
        zone = str(meta.get("zone") or fname[: -len(".json")].split("_")[0])
        info = meta.get("price_info") or {}
        spot = float(info["price"]) if "price" in info else None
        od = float(info["on_demand_price"]) if "on_demand_price" in info else None
        region = str(info.get("region") or region_of(zone))
        zones.append(ZoneTrace(zone, region, available, spot, od, capacity))
    return start, gap, zones
