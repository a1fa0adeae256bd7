"""Generators of spot traces in the three on-disk formats ``skyctl.traces`` reads.

A pattern is per zone a list of availability flags in OUR convention (True =
a spot instance can be obtained and kept); each writer converts to its
format's own convention (AWS CSV: 1 = available; GCP zones/*.json: 1 =
preempted; counts: how many of ``nodes`` are available). Used by
tests/test_sim_traces_unseen.py and tests/test_sim_traces_hostile.py to build
traces the loader has never seen.
"""

from __future__ import annotations

import json
import random
import tarfile
from datetime import UTC, datetime
from pathlib import Path

Pattern = dict[str, list[bool]]

AWS_ZONES = [f"{r}{z}" for r in ("us-east-1", "us-east-2", "us-west-2") for z in "abcdef"]
GCP_ZONES = [
    f"{r}-{z}"
    for r in ("us-central1", "us-east4", "europe-west4", "asia-southeast1", "us-west1")
    for z in "abc"
]


def zone_names(count: int, *, gcp: bool = False) -> list[str]:
    """``count`` distinct zone names, several per region (more than the lists: numbered regions)."""
    base = GCP_ZONES if gcp else AWS_ZONES
    if count <= len(base):
        return base[:count]
    if gcp:
        return [f"syn{i // 3}-region{i // 3}-{'abc'[i % 3]}" for i in range(count)]
    return [f"xx-syn-{i // 3 + 1}{'abc'[i % 3]}" for i in range(count)]


def pattern(kind: str, zones: list[str], ticks: int, *, seed: int = 0) -> Pattern:
    """Availability per zone: ``all``, ``never``, ``flap`` (every tick, zones out of
    phase), ``long`` (each zone out for a long stretch: the middle 60% of the trace,
    shifted per zone), ``regional`` (every zone of a region out together, regions
    in turn), ``random`` (independent coin flips, 80% up)."""
    rng = random.Random(seed)
    out: Pattern = {}
    regions = sorted({_region(z) for z in zones})
    for i, z in enumerate(zones):
        if kind == "all":
            col = [True] * ticks
        elif kind == "never":
            col = [False] * ticks
        elif kind == "flap":
            col = [(t + i) % 2 == 0 for t in range(ticks)]
        elif kind == "long":
            lo = (ticks // 5 + i * max(1, ticks // 50)) % max(1, ticks)
            hi = lo + (ticks * 3) // 5
            col = [not (lo <= t < hi) for t in range(ticks)]
        elif kind == "regional":
            k = regions.index(_region(z))
            span = max(1, ticks // (2 * len(regions)))
            col = [not (k * 2 * span <= t < (k * 2 + 1) * span) for t in range(ticks)]
            if len(regions) == 1:  # one region: it goes out as a whole, twice
                col = [
                    not (ticks // 4 <= t < ticks // 2 or 3 * ticks // 4 <= t) for t in range(ticks)
                ]
        elif kind == "random":
            col = [rng.random() < 0.8 for _ in range(ticks)]
        else:
            raise ValueError(f"unknown pattern {kind!r}")
        out[z] = col
    return out


def _region(zone: str) -> str:
    return zone.rsplit("-", 1)[0] if zone.count("-") >= 2 and zone[-2] == "-" else zone[:-1]


def _stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def write_aws(
    root: Path,
    avail: Pattern,
    *,
    start: float = 1_676_498_896.0,
    gap: float = 195.0,
    prices: dict[str, list[float]] | None = None,
    ondemand: float | None = 3.06,
    suffix: str = "_v100_1",
) -> Path:
    """``availability/<zone><suffix>.csv`` (1 = available), optional ``spot_prices.json``
    keyed by file stem, and a ``trace.json`` with the on-demand price (AWS data lacks one)."""
    (root / "availability").mkdir(parents=True)
    for zone, col in avail.items():
        lines = ["date,availability"]
        lines += [f"{_stamp(start + i * gap)},{int(a)}" for i, a in enumerate(col)]
        (root / "availability" / f"{zone}{suffix}.csv").write_text("\n".join(lines) + "\n")
    if prices is not None:
        doc = {f"{z}{suffix}": p for z, p in prices.items()}
        (root / "spot_prices.json").write_text(json.dumps(doc))
    if ondemand is not None:
        (root / "trace.json").write_text(json.dumps({"ondemand_price": ondemand}))
    return root


def write_gcp(
    root: Path,
    avail: Pattern,
    *,
    start: str = "2025-10-04T00:10:00+00:00",
    gap: float = 600.0,
    spot: float = 18.98,
    ondemand: float = 82.53,
) -> Path:
    """``zones/<zone>.json``: data 1 = PREEMPTED (the opposite convention), prices in
    ``metadata.price_info``."""
    (root / "zones").mkdir(parents=True)
    for zone, col in avail.items():
        meta = {
            "gap_seconds": gap,
            "start_time": start,
            "zone": zone,
            "price_info": {"region": _region(zone), "price": spot, "on_demand_price": ondemand},
        }
        doc = {"metadata": meta, "data": [0 if a else 1 for a in col]}
        (root / "zones" / f"{zone}.json").write_text(json.dumps(doc))
    return root


def write_counts(
    root: Path,
    counts: dict[str, list[int]],
    *,
    gap: float = 300.0,
    ondemand: float | None = 3.06,
) -> Path:
    """``<zone>_v100_1.json`` with a count per tick (available = count > 0)."""
    root.mkdir(parents=True)
    for zone, col in counts.items():
        doc = {"metadata": {"gap_seconds": gap}, "data": col}
        (root / f"{zone}_v100_1.json").write_text(json.dumps(doc))
    if ondemand is not None:
        (root / "trace.json").write_text(json.dumps({"ondemand_price": ondemand}))
    return root


def as_counts(avail: Pattern, nodes: int, *, seed: int = 0) -> dict[str, list[int]]:
    """Counts out of ``nodes``: 0 where unavailable, 1..nodes (random) where available."""
    rng = random.Random(seed)
    return {z: [rng.randint(1, nodes) if a else 0 for a in col] for z, col in avail.items()}


# ---------------------------------------------------------------- raw files, for hostile ones

OK_CSV = "date,availability\n2023-01-01 00:00:00,1\n2023-01-01 00:05:00,0\n2023-01-01 00:10:00,1\n"


def aws_raw(
    root: Path,
    csv: str | bytes,
    *,
    other: str | None = None,
    prices: str | None = None,
    trace_json: str = '{"ondemand_price": 3.06}',
    name: str = "us-east-1a_v100_1.csv",
) -> Path:
    """An AWS folder with ``csv`` as the file ``name``, as is (malformed ones too)."""
    (root / "availability").mkdir(parents=True)
    data = csv.encode() if isinstance(csv, str) else csv
    (root / "availability" / name).write_bytes(data)
    if other is not None:
        (root / "availability" / "us-east-1b_v100_1.csv").write_text(other)
    if prices is not None:
        (root / "spot_prices.json").write_text(prices)
    (root / "trace.json").write_text(trace_json)
    return root


def tar_of(folder: Path, out: Path, mode: str = "w:gz") -> Path:
    """``folder`` packed into the tar archive ``out`` (``mode``: its compression)."""
    with tarfile.open(out, mode) as tf:
        tf.add(folder, arcname=folder.name)
    return out


def write(fmt: str, root: Path, kind: str, zones: int, ticks: int, gap: float) -> Path:
    """A generated trace in ``fmt`` (``aws``, ``aws-noprices``, ``gcp``, ``counts``):
    ``kind``'s pattern over ``zones`` zones, ``ticks`` ticks ``gap`` seconds apart."""
    names = zone_names(zones, gcp=fmt == "gcp")
    avail = pattern(kind, names, ticks, seed=zones)
    if fmt == "aws":
        prices = {
            z: [0.9 + 0.01 * (i % 7) + 0.001 * (t % 5) for t in range(ticks)]
            for i, z in enumerate(names)
        }
        return write_aws(root, avail, gap=gap, prices=prices)
    if fmt == "aws-noprices":
        return write_aws(root, avail, gap=gap)
    if fmt == "gcp":
        return write_gcp(root, avail, gap=gap)
    return write_counts(root, as_counts(avail, 4, seed=zones), gap=gap)
