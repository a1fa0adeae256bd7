"""The three on-disk trace formats, parsed and checked value by value.

Each parser reads the files of one trace folder (through
:class:`skyctl.trace_files.Files`) and returns zones in one convention
(``available[i] is True``: a spot instance could be obtained and kept during
tick ``i``). The layouts and what is refused are in docs/simulator.md ("Trace
formats"): AWS ``availability/<zone>_<type>.csv`` (``date,availability``,
**1 = available**, optional ``spot_prices.json``); GCP ``zones/<zone>.json``
(``{"metadata", "data"}``, **1 = preempted**, prices in
``metadata.price_info``); counts ``<zone>_<type>.json`` in the folder (how
many instances could be had: a capacity cap; zones of unequal length cut to
the shortest, said in ``Trace.notes``); an optional ``trace.json`` of ours
(``ondemand_price``, ``gap_seconds``, ``start``, ``nodes``). Every error is one
line naming the file, the line or key, and what is allowed.
"""

from __future__ import annotations

import array
import csv
import hashlib
import io
import itertools
import re
import statistics
from datetime import UTC, datetime
from typing import Any, NamedTuple

from skyctl.trace_files import Files, TraceError, finite, shown
from skyctl.traces import MAX_PRICE, Trace, ZoneTrace, region_of

MAX_ZONES = 256
_FLAGS = {"0": False, "1": True, "0.0": False, "1.0": True}  # a float column writes 1.0
MAX_TICKS = 5_000_000  # per zone: ~31 years at 195 s ticks
MAX_CELLS = 10_000_000  # ticks x zones held in memory (a year of 60 s ticks x 19 zones)
MAX_COUNT = 1_000_000
# A replay plans at every tick and, while capacity is short, about twice an hour of trace
# time (capacity holds, probes): an hour counts as two ticks against MAX_TICKS and MAX_CELLS.
PLANS_PER_HOUR = 2
# keys of a GCP zone file's metadata that a count file never has (see _parse_counts)
GCP_ONLY_KEYS = ("price_info", "start_time", "zone", "gap_filled", "source_dir")
TRACE_JSON_KEYS = ("ondemand_price", "gap_seconds", "start", "nodes")
LAYOUTS = (
    "availability/<zone>_<type>.csv (AWS, 1 = available), zones/<zone>.json (GCP, "
    "1 = preempted) or <zone>_<type>.json counts (see docs/simulator.md, 'Trace formats')"
)


def kind_of(files: Files, folder: str) -> str | None:
    prefix = f"{folder}/" if folder else ""
    if any(n.endswith(".csv") for n in files.listdir(prefix + "availability")):
        return "aws"
    if any(n.endswith(".json") for n in files.listdir(prefix + "zones")):
        return "gcp"
    if any(n.endswith(".json") and n != "trace.json" for n in files.listdir(folder)):
        return "counts"
    return None


def parse(
    files: Files, folder: str, label: str, ondemand: float | None, known: float | None
) -> Trace:
    """The trace in ``folder`` of ``files``; ``ondemand`` (the caller's price) or
    ``known`` (the bundled table's) apply where the data carries none."""
    prefix = f"{folder}/" if folder else ""
    extra = _trace_json(files, prefix) if "trace.json" in files.listdir(folder) else {}
    kind = kind_of(files, folder)
    notes: tuple[str, ...] = ()
    if kind == "aws":
        start, gap, zones, notes = _parse_aws(files, prefix, extra)
    elif kind == "gcp":
        start, gap, zones = _parse_gcp(files, prefix + "zones", extra)
    else:
        start, gap, zones, notes = _parse_counts(files, folder, extra)
    od = extra.get("ondemand_price", ondemand if ondemand is not None else known)
    if od is None:
        zone_od = [z.ondemand_price for z in zones if z.ondemand_price is not None]
        od = min(zone_od) if zone_od else None
    if od is None:
        raise TraceError(
            repr(label),
            "carries no on-demand price: pass --ondemand-price USD_PER_HOUR "
            '(ondemand_price= in Python) or put {"ondemand_price": USD_PER_HOUR} in a '
            "trace.json beside its data",
        )
    return Trace(label, start, gap, tuple(zones), float(od), notes)


# ---------------------------------------------------------------- shared checks


def _trace_json(files: Files, prefix: str) -> dict[str, Any]:
    name = prefix + "trace.json"
    where = files.where(name)
    doc = files.json(name)
    if not isinstance(doc, dict):
        raise TraceError(where, f"expected an object with keys {', '.join(TRACE_JSON_KEYS)}")
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key not in TRACE_JSON_KEYS:
            raise TraceError(
                where, f"unknown key {shown(key)}; allowed: {', '.join(TRACE_JSON_KEYS)}"
            )
        if key == "start":
            out[key] = _start(where, key, value)
        elif key == "nodes":
            out[key] = _whole(where, key, value, 1, MAX_COUNT)
        elif key == "ondemand_price":
            out[key] = _positive(where, key, value, high=MAX_PRICE)
        else:
            out[key] = _positive(where, key, value)
    return out


def _positive(
    where: str, key: str, value: object, *, zero_ok: bool = False, high: float | None = None
) -> float:
    f = finite(value)
    if f is None or f < 0 or (f == 0 and not zero_ok) or (high is not None and f > high):
        allowed = "a finite number >= 0" if zero_ok else "a finite number > 0"
        if high is not None:
            allowed += f", at most {high:,.0f} (USD/h)"
        raise TraceError(where, f"{key} {shown(value)}: must be {allowed}")
    return f


def _whole(where: str, key: str, value: object, low: int, high: int) -> int:
    f = finite(value)
    if f is None or f != int(f) or not low <= f <= high:
        raise TraceError(
            where, f"{key} {shown(value)}: must be a whole number from {low} to {high:,}"
        )
    return int(f)


def _epoch(text: str) -> float:
    dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)  # the AWS traces are in UTC
    return dt.timestamp()


def _start(where: str, key: str, value: object) -> float:
    if isinstance(value, str):
        try:
            t = _epoch(value)
        except ValueError:
            pass
        else:
            if t >= 0:  # policies' clocks start at 1970: a hold_until of 0.0 means "none"
                return t
    else:
        f = finite(value)
        if f is not None and 0 <= f < 253402300800:  # up to 9999-12-31
            return f
    raise TraceError(
        where,
        f"{key} {shown(value)}: must be an ISO 8601 date or epoch seconds, from 1970 to year 9999",
    )


def _check_size(where: str, ticks: int, zones: int) -> None:
    if ticks < 1:
        raise TraceError(where, "no ticks; a trace needs at least one value per zone")
    if ticks > MAX_TICKS or ticks * zones > MAX_CELLS:
        raise TraceError(
            where,
            f"{ticks:,} ticks x {zones} zones; at most {MAX_TICKS:,} ticks and "
            f"{MAX_CELLS:,} values in all (cut the trace, or use a longer tick)",
        )


def _check_span(where: str, ticks: int, gap: float, zones: int) -> None:
    """The trace's length in time bounds a replay's work as its ticks do (PLANS_PER_HOUR)."""
    hours = ticks * gap / 3600
    work = max(ticks, PLANS_PER_HOUR * hours)
    if work > MAX_TICKS or work * zones > MAX_CELLS:
        span = f"{hours:,.0f}" if hours < 1e9 else f"{hours:.3g}"
        raise TraceError(
            where,
            f"{ticks:,} ticks of {gap:g} s span {span} h over {zones} zone(s); a replay "
            f"plans about {PLANS_PER_HOUR} times an hour, so a trace spans at most "
            f"{MAX_TICKS // PLANS_PER_HOUR:,} h and {MAX_CELLS // PLANS_PER_HOUR:,} zone-hours "
            "in all (cut the trace, or check its tick length)",
        )


def _gap(where: str, extra: dict[str, Any], meta_gap: object, key: str) -> float:
    if "gap_seconds" in extra:
        return float(extra["gap_seconds"])
    if meta_gap is None:
        raise TraceError(
            where, f"no {key}: the tick length in seconds (> 0), or gap_seconds in a trace.json"
        )
    return _positive(where, key, meta_gap)


def _zone_files(files: Files, folder: str, suffix: str) -> list[str]:
    names = [n for n in files.listdir(folder) if n.endswith(suffix) and n != "trace.json"]
    if len(names) > MAX_ZONES:
        raise TraceError(
            files.where(folder or "."), f"{len(names)} zone files; at most {MAX_ZONES}"
        )
    return names


def _named(where: str, key: str, value: object, what: str) -> str:
    """A zone or region name: 1 to 128 printable characters, no '/' (locations are
    ``cloud/region/zone``)."""
    ok = isinstance(value, str) and 0 < len(value) <= 128 and value.isprintable()
    if not ok or "/" in str(value):
        raise TraceError(
            where,
            f"{key} {shown(value)}: expected {what}, a name of 1 to 128 characters without '/'",
        )
    return str(value)


def _unique(files: Files, name: str, zone: str, seen: dict[str, str]) -> None:
    if zone in seen:
        raise TraceError(
            files.where(name), f"zone {zone!r} again (also {seen[zone]}); one file per zone"
        )
    seen[zone] = name


# ---------------------------------------------------------------- AWS


def _csv(files: Files, name: str) -> tuple[list[str], list[bool], array.array[int]]:
    """A ``date,availability`` CSV: its date strings, availability (1 = available) and
    the line number of each row (blank lines are skipped)."""
    where = files.where(name)
    reader = csv.reader(io.StringIO(files.text(name), newline=None))  # \n, \r\n or \r
    dates: list[str] = []
    avail: list[bool] = []
    lines = array.array("q")  # 8 bytes a row, not an int object: 3,000,000 rows fit a file
    try:
        header = next(reader, None)
        if header is None:
            raise TraceError(
                where, "empty; expected a header 'date,availability', then a row a tick"
            )
        cols = [c.strip().lower() for c in header]
        if "date" not in cols or "availability" not in cols:
            raise TraceError(
                f"{where}:1",
                f"header {shown(','.join(header))}: expected columns date,availability",
            )
        di, ai = cols.index("date"), cols.index("availability")
        for row in reader:
            if not any(c.strip() for c in row):
                continue  # a blank line
            line = reader.line_num
            if len(row) <= max(di, ai):
                raise TraceError(
                    f"{where}:{line}", f"{shown(','.join(row))}: expected date,availability"
                )
            value = row[ai].strip()
            if value not in _FLAGS:
                raise TraceError(
                    f"{where}:{line}",
                    f"availability {shown(value)}: must be 0 or 1 (1 = available)",
                )
            dates.append(row[di].strip())
            avail.append(_FLAGS[value])
            lines.append(line)
    except csv.Error as e:
        raise TraceError(f"{where}:{reader.line_num}", f"not CSV ({e})") from None
    if not avail:
        raise TraceError(where, "no rows after the header; a trace needs at least one tick")
    return dates, avail, lines


def _times(
    files: Files, name: str, dates: list[str], lines: array.array[int]
) -> array.array[float]:
    where = files.where(name)
    out = array.array("d")
    for i, text in enumerate(dates):
        try:
            t = _epoch(text)
        except ValueError:
            raise TraceError(
                f"{where}:{lines[i]}",
                f"date {shown(text)}: expected ISO 8601 (2023-02-15 22:08:16, UTC)",
            ) from None
        if t < 0:  # policies' clocks start at 1970: a hold_until of 0.0 means "none"
            raise TraceError(
                f"{where}:{lines[i]}", f"date {shown(text)}: before 1970; dates run from 1970"
            )
        if out and t <= out[-1]:
            raise TraceError(
                f"{where}:{lines[i]}",
                f"date {shown(text)} is not after the row before ({dates[i - 1]}): rows must be "
                "sorted by date, one a tick, no duplicates",
            )
        out.append(t)
    return out


def _tick_of(
    files: Files, name: str, times: array.array[float], dates: list[str], lines: array.array[int]
) -> float | None:
    """The median step between dates; None with one row. A step over twice it is a hole."""
    steps = array.array("d", (b - a for a, b in itertools.pairwise(times)))
    if not steps:
        return None
    median = statistics.median(steps)
    gap = float(round(median) or median)
    for i, step in enumerate(steps):
        if step > 2 * gap:
            raise TraceError(
                f"{files.where(name)}:{lines[i + 1]}",
                f"date {dates[i + 1]!r} comes {step:,.0f} s after the row before, ticks are "
                f"{gap:g} s: a hole in the data (fill it, or split the trace there)",
            )
    return gap


def _parse_aws(
    files: Files, prefix: str, extra: dict[str, Any]
) -> tuple[float, float, list[ZoneTrace], tuple[str, ...]]:
    names = _zone_files(files, prefix + "availability", ".csv")
    prices: dict[str, list[float]] = {}
    stems = [n[: -len(".csv")] for n in names]
    if "spot_prices.json" in files.listdir(prefix.rstrip("/")):
        prices = _aws_prices(files, prefix + "spot_prices.json", stems)
    zones: list[ZoneTrace] = []
    first: _First | None = None
    seen: dict[str, str] = {}
    for fname, stem in zip(names, stems, strict=True):
        name = f"{prefix}availability/{fname}"
        dates, avail, lines = _csv(files, name)
        _check_size(files.where(name), len(avail), len(names))
        digest = _digest(dates)  # the first file's dates are not kept: 200 MB at 3M rows
        if first is None:
            times = _times(files, name, dates, lines)
            tick = _tick_of(files, name, times, dates, lines)
            first = _First(fname, len(dates), dates[0], digest, times[0], tick, times[-1])
        elif (len(dates), digest) != (first.rows, first.digest):
            times = _times(files, name, dates, lines)
            _tick_of(files, name, times, dates, lines)
            if len(dates) != first.rows or abs(times[0] - first.start) >= (first.tick or 1) / 2:
                raise TraceError(
                    files.where(name),
                    f"{len(dates):,} rows from {dates[0]}, but {first.name} has "
                    f"{first.rows:,} from {first.date}: every zone's CSV must cover "
                    "the same ticks",
                )
        del dates, lines
        price: tuple[float, ...] | None = None
        if stem in prices:
            price = tuple(prices[stem])
            if len(price) != len(avail):
                raise TraceError(
                    files.where(prefix + "spot_prices.json"),
                    f"{stem}: {len(price):,} prices, but {fname} has {len(avail):,} rows: "
                    "one price per row",
                )
        zone = _named(files.where(name), "the file name", stem.split("_")[0], "<zone>_<type>.csv")
        _unique(files, name, zone, seen)
        zones.append(ZoneTrace(zone, region_of(zone), tuple(avail), price, None))
    assert first is not None
    gap = first.tick
    if "gap_seconds" in extra:
        gap = float(extra["gap_seconds"])
    where = files.where(f"{prefix}availability/{first.name}")
    if gap is None:
        raise TraceError(
            where,
            "one row, so the tick length cannot be read from the dates: put "
            '{"gap_seconds": SECONDS} in a trace.json beside availability/',
        )
    if "gap_seconds" in extra:
        where = files.where(prefix + "trace.json")
    _check_span(where, len(zones[0].available), gap, len(zones))
    notes = _stretch(first, len(zones[0].available), gap)
    return float(extra.get("start", first.start)), gap, zones, notes


class _First(NamedTuple):
    """What the first CSV of an AWS trace sets for the others."""

    name: str
    rows: int
    date: str  # its first date, as written
    digest: bytes  # of its dates, as written: another CSV with the same needs no parsing
    start: float
    tick: float | None  # None: one row
    end: float  # its last date


def _digest(dates: list[str]) -> bytes:
    return hashlib.blake2b("\n".join(dates).encode(), digest_size=16).digest()


def _stretch(first: _First, ticks: int, gap: float) -> tuple[str, ...]:
    """A note when the rows replayed evenly spaced, one tick each, span over 10% more or
    less than their dates (irregular timestamps: every figure in hours is off as much)."""
    dated, replayed = first.end - first.start + gap, ticks * gap
    if abs(dated - replayed) <= 0.1 * replayed:
        return ()
    return (
        f"{first.name}'s dates span {dated / 3600:,.1f} h, but its {ticks:,} rows are replayed "
        f"evenly spaced, one tick of {gap:g} s each: {replayed / 3600:,.1f} h; resample the "
        "trace to one tick if the hours matter",
    )


def _aws_prices(files: Files, name: str, stems: list[str]) -> dict[str, list[float]]:
    where = files.where(name)
    doc = files.json(name)
    if not isinstance(doc, dict):
        raise TraceError(where, 'expected {"<csv file stem>": [USD per hour, one per row]}')
    zones = {stem.split("_")[0]: stem for stem in stems}  # a zone's name may key it too
    for key in doc:
        if key not in stems and key not in zones:
            raise TraceError(
                where,
                f"key {shown(key)} names no availability/*.csv; keys: {', '.join(stems)} "
                "(file stems) or their zones",
            )
    out: dict[str, list[float]] = {}
    for stem in stems:
        values = doc.get(stem, doc.get(stem.split("_")[0]))
        if values is None:
            continue  # no prices for this zone: DEFAULT_SPOT_DISCOUNT of on-demand
        if not isinstance(values, list):
            raise TraceError(
                where, f"{stem}: not a list; expected USD per hour, one per row of its CSV"
            )
        row = []
        for i, v in enumerate(values):
            f = finite(v)
            if f is None or not 0 <= f <= MAX_PRICE:
                raise TraceError(
                    where,
                    f"{stem}[{i}] {shown(v)}: must be a finite price >= 0, "
                    f"at most {MAX_PRICE:,.0f} (USD/h)",
                )
            row.append(f)
        out[stem] = row
    return out


# ---------------------------------------------------------------- GCP and counts


def _doc(files: Files, name: str) -> tuple[dict[str, Any], list[Any]]:
    where = files.where(name)
    doc = files.json(name)
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise TraceError(where, 'expected {"metadata": {...}, "data": [one value a tick]}')
    meta = doc.get("metadata", {})
    if not isinstance(meta, dict):
        raise TraceError(where, "metadata: expected an object")
    return meta, doc["data"]


def _parse_gcp(
    files: Files, folder: str, extra: dict[str, Any]
) -> tuple[float, float, list[ZoneTrace]]:
    names = _zone_files(files, folder, ".json")
    zones: list[ZoneTrace] = []
    seen: dict[str, str] = {}
    ref: tuple[str, float, float, int] | None = None  # name, start, gap, ticks
    for fname in names:
        name = f"{folder}/{fname}"
        where = files.where(name)
        meta, data = _doc(files, name)
        if "nodes" in meta:
            raise TraceError(
                where,
                "metadata.nodes: looks like a count file (1 = one available), which would read "
                "here as GCP data (1 = preempted): put count files directly in the trace folder",
            )
        _check_size(where, len(data), len(names))
        available = []
        for i, v in enumerate(data):
            if isinstance(v, bool) or v not in (0, 1):
                raise TraceError(
                    where,
                    f"data[{i}] {shown(v)}: must be 0 or 1 (GCP: 1 = preempted, 0 = available)",
                )
            available.append(v == 0)
        gap = _gap(where, extra, meta.get("gap_seconds"), "metadata.gap_seconds")
        _check_span(where, len(data), gap, len(names))
        start = 0.0
        if "start_time" in meta:
            start = _start(where, "metadata.start_time", meta["start_time"])
        if ref is None:
            ref = (fname, start, gap, len(data))
        elif (gap, len(data)) != ref[2:] or abs(start - ref[1]) >= gap / 2:
            raise TraceError(
                where,
                f"{len(data):,} ticks of {gap:g} s from {start:.0f}, but {ref[0]} has "
                f"{ref[3]:,} of {ref[2]:g} s from {ref[1]:.0f}: every zone must cover the "
                "same ticks",
            )
        zone = _named(where, "metadata.zone", meta.get("zone", fname[: -len(".json")]), "a zone")
        _unique(files, name, zone, seen)
        info = meta.get("price_info", {})
        if not isinstance(info, dict):
            raise TraceError(where, "metadata.price_info: expected an object")
        spot = od = None
        if "price" in info:
            spot = _positive(
                where, "metadata.price_info.price", info["price"], zero_ok=True, high=MAX_PRICE
            )
        if "on_demand_price" in info:
            od = _positive(
                where,
                "metadata.price_info.on_demand_price",
                info["on_demand_price"],
                high=MAX_PRICE,
            )
        region = _named(
            where, "metadata.price_info.region", info.get("region", region_of(zone)), "a region"
        )
        zones.append(ZoneTrace(zone, region, tuple(available), spot, od))
    assert ref is not None
    return float(extra.get("start", ref[1])), ref[2], zones


def _nodes(files: Files, folder: str, extra: dict[str, Any]) -> int | None:
    if "nodes" in extra:
        return int(extra["nodes"])
    m = re.match(r"(\d+)-nodes", folder.rsplit("/", 1)[-1] or files.root.rsplit("/", 1)[-1])
    return int(m.group(1)) if m else None


def _parse_counts(
    files: Files, folder: str, extra: dict[str, Any]
) -> tuple[float, float, list[ZoneTrace], tuple[str, ...]]:
    names = _zone_files(files, folder, ".json")
    prefix = f"{folder}/" if folder else ""
    folder_nodes = _nodes(files, folder, extra)
    zones: list[ZoneTrace] = []
    seen: dict[str, str] = {}
    gap0: tuple[str, float] | None = None
    for fname in names:
        name = prefix + fname
        where = files.where(name)
        meta, data = _doc(files, name)
        gcp_keys = [k for k in GCP_ONLY_KEYS if k in meta]
        if gcp_keys:
            raise TraceError(
                where,
                f"metadata.{gcp_keys[0]}: looks like a GCP zone file (1 = preempted), which would "
                "read here as a count (1 = available): put GCP files in a zones/ folder; a "
                "count file's metadata holds gap_seconds and nodes (a start goes in trace.json)",
            )
        _check_size(where, len(data), len(names))
        nodes = folder_nodes
        if "nodes" in meta:
            nodes = _whole(where, "metadata.nodes", meta["nodes"], 1, MAX_COUNT)
        high = nodes if nodes is not None else MAX_COUNT
        what = f"the node count, {nodes}" if nodes is not None else f"{MAX_COUNT:,}"
        capacity = []
        for i, v in enumerate(data):
            f = finite(v)
            if f is None or f != int(f) or not 0 <= f <= high:
                raise TraceError(
                    where, f"data[{i}] {shown(v)}: must be a whole count from 0 to {what}"
                )
            capacity.append(int(f))
        gap = _gap(where, extra, meta.get("gap_seconds"), "metadata.gap_seconds")
        _check_span(where, len(data), gap, len(names))
        if gap0 is None:
            gap0 = (fname, gap)
        elif gap != gap0[1]:
            raise TraceError(
                where, f"gap_seconds {gap:g}, but {gap0[0]} has {gap0[1]:g}: one tick for all zones"
            )
        zone = _named(
            where, "the file name", fname[: -len(".json")].split("_")[0], "<zone>_<type>.json"
        )
        _unique(files, name, zone, seen)
        caps = tuple(capacity)
        zones.append(ZoneTrace(zone, region_of(zone), tuple(c > 0 for c in caps), None, None, caps))
    assert gap0 is not None
    n = min(len(z.available) for z in zones)
    notes: tuple[str, ...] = ()
    longer = [f"{z.zone} {len(z.available):,}" for z in zones if len(z.available) > n]
    if longer:
        notes = (
            f"zones of unequal length cut to the shortest, {n:,} ticks "
            f"({', '.join(longer)} before): count files carry no start time, so they are "
            "aligned at their first tick",
        )
        zones = [_truncate(z, n) for z in zones]
    return float(extra.get("start", 0.0)), gap0[1], zones, notes


def _truncate(z: ZoneTrace, n: int) -> ZoneTrace:
    cap = z.capacity[:n] if z.capacity is not None else None
    return ZoneTrace(z.zone, z.region, z.available[:n], z.spot_price, z.ondemand_price, cap)
