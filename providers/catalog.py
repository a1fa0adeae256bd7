"""The instance-type catalog the cloud providers share: what exists, where, at what price.

Each cloud ships ``skyctl/data/catalog/<cloud>.csv``: one row per instance
type and region with its accelerators, vCPUs, memory (GiB) and hourly list
prices in USD. Lines starting with ``#`` are comments; the file opens with a
comment naming its source and date. Columns::

    instance_type,accelerator_name,accelerator_count,vcpus,memory_gib,region,ondemand_price,spot_price

``accelerator_name`` is empty (and ``accelerator_count`` 0) for CPU-only types;
``spot_price`` may be empty when the cloud sells no spot for that type or the
price is unknown (providers then use a live price, or the on-demand price as an
upper bound).

A user override file (``catalog:`` in the cloud's config section) has the same
columns; its rows replace the bundled rows with the same
``(instance_type, region)`` and add new ones.

:func:`match` picks the rows that satisfy one ``resources`` candidate; this
module does no I/O besides reading the CSV files and imports no cloud SDK.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from skyctl.errors import ConfigError, SpecError
from skyctl.spec import ResourceCandidate

__all__ = [
    "COLUMNS",
    "CatalogEntry",
    "load_catalog",
    "match",
    "parse_catalog",
    "parse_quantity",
    "regions",
]

COLUMNS = (
    "instance_type",
    "accelerator_name",
    "accelerator_count",
    "vcpus",
    "memory_gib",
    "region",
    "ondemand_price",
    "spot_price",
)

_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(\+?)\s*$")


@dataclass(frozen=True)
class CatalogEntry:
    """One instance type in one region."""

    instance_type: str
    accelerator_name: str  # "" for CPU-only types
    accelerator_count: int
    vcpus: float
    memory_gib: float
    region: str
    ondemand_price: float  # USD per hour
    spot_price: float | None  # USD per hour; None when unknown

    @property
    def accelerators(self) -> str:
        """``"A100:8"``, or ``""`` for a CPU-only type (the Offering field)."""
        if not self.accelerator_name:
            return ""
        return f"{self.accelerator_name}:{self.accelerator_count}"


def _bundled_text(cloud: str) -> str:
    ref = resources.files("skyctl").joinpath("data", "catalog", f"{cloud}.csv")
    if not ref.is_file():
        raise ConfigError(
            f"no bundled catalog for cloud {cloud!r} (skyctl/data/catalog/{cloud}.csv)"
        )
    return ref.read_text(encoding="utf-8")


def load_catalog(cloud: str, override_path: str | None = None) -> list[CatalogEntry]:
    """The bundled catalog of ``cloud``, with the rows of ``override_path`` laid over it.

    Raises ConfigError (one line, with file and line number) on a malformed file.
    """
    entries = parse_catalog(_bundled_text(cloud), source=f"skyctl/data/catalog/{cloud}.csv")
    if override_path:
        path = Path(override_path).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"{cloud}.catalog: cannot read {path}: {e.strerror or e}") from None
        overrides = parse_catalog(text, source=str(path))
        replaced = {(e.instance_type, e.region) for e in overrides}
        entries = [e for e in entries if (e.instance_type, e.region) not in replaced] + overrides
    return entries


def parse_catalog(text: str, *, source: str = "<catalog>") -> list[CatalogEntry]:
    """Parse catalog CSV text (comments allowed) into entries."""
    rows: list[tuple[int, str]] = [
        (n, line)
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not rows:
        raise ConfigError(f"{source}: empty catalog; expected header {','.join(COLUMNS)}")
    header_line, header = rows[0]
    names = [c.strip() for c in next(csv.reader(io.StringIO(header)))]
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise ConfigError(
            f"{source}:{header_line}: missing column(s) {', '.join(missing)}; "
            f"expected {','.join(COLUMNS)}"
        )
    entries = []
    for n, line in rows[1:]:
        values = [v.strip() for v in next(csv.reader(io.StringIO(line)))]
        if len(values) != len(names):
            raise ConfigError(f"{source}:{n}: expected {len(names)} fields, got {len(values)}")
        entries.append(_entry(dict(zip(names, values, strict=True)), f"{source}:{n}"))
    return entries


def _number(
    row: dict[str, str], key: str, where: str, *, allow_empty: bool = False
) -> float | None:
    value = row[key]
    if value == "" and allow_empty:
        return None
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{where}: {key} must be a number, got {value!r}") from None
    if number < 0:
        raise ConfigError(f"{where}: {key} must be >= 0, got {value!r}")
    return number


def _entry(row: dict[str, str], where: str) -> CatalogEntry:
    if not row["instance_type"]:
        raise ConfigError(f"{where}: instance_type is empty")
    if not row["region"]:
        raise ConfigError(f"{where}: region is empty")
    count = _number(row, "accelerator_count", where, allow_empty=True) or 0.0
    if count != int(count):
        raise ConfigError(
            f"{where}: accelerator_count must be an integer, got {row['accelerator_count']!r}"
        )
    if bool(row["accelerator_name"]) != (count > 0):
        raise ConfigError(
            f"{where}: accelerator_name and accelerator_count must be both set or both empty"
        )
    vcpus = _number(row, "vcpus", where)
    memory = _number(row, "memory_gib", where)
    ondemand = _number(row, "ondemand_price", where)
    assert vcpus is not None and memory is not None and ondemand is not None
    return CatalogEntry(
        instance_type=row["instance_type"],
        accelerator_name=row["accelerator_name"],
        accelerator_count=int(count),
        vcpus=vcpus,
        memory_gib=memory,
        region=row["region"],
        ondemand_price=ondemand,
        spot_price=_number(row, "spot_price", where, allow_empty=True),
    )


def parse_quantity(text: str, key: str) -> tuple[float, bool]:
    """``"8"`` -> (8.0, False) (exactly), ``"8+"`` -> (8.0, True) (at least).

    Raises SpecError naming ``key`` on anything else.
    """
    m = _QUANTITY.match(str(text))
    if not m:
        raise SpecError(f"expected a number or a number followed by '+', got {text!r}", key=key)
    return float(m.group(1)), bool(m.group(2))


def _quantity_ok(have: float, want: str | None, key: str) -> bool:
    if want is None:
        return True
    amount, at_least = parse_quantity(want, key)
    return have >= amount if at_least else abs(have - amount) < 1e-9


def match(candidate: ResourceCandidate, entries: Iterable[CatalogEntry]) -> list[CatalogEntry]:
    """The entries that satisfy ``candidate``, cheapest on-demand first.

    - ``instance_type``: only that type (accelerators/cpus/memory still apply).
    - ``accelerators`` ``{"A100": 8}``: that accelerator (case-insensitive) and
      count; several names are alternatives. Without accelerators and without
      an explicit ``instance_type``, only CPU-only types match, so a CPU service
      never pays for a GPU.
    - ``cpus`` / ``memory``: ``"8"`` exactly, ``"8+"`` at least.
    - ``region``: only that region.
    """
    wanted = {k.lower(): v for k, v in (candidate.accelerators or {}).items()}
    out = []
    for e in entries:
        if candidate.instance_type and e.instance_type != candidate.instance_type:
            continue
        if candidate.region and e.region != candidate.region:
            continue
        if wanted:
            if wanted.get(e.accelerator_name.lower()) != e.accelerator_count:
                continue
        elif e.accelerator_count and not candidate.instance_type:
            continue
        if not _quantity_ok(e.vcpus, candidate.cpus, "resources.cpus"):
            continue
        if not _quantity_ok(e.memory_gib, candidate.memory, "resources.memory"):
            continue
        out.append(e)
    out.sort(key=lambda e: (e.ondemand_price, e.instance_type, e.region))
    return out


def regions(entries: Sequence[CatalogEntry]) -> list[str]:
    """The regions the entries cover, sorted."""
    return sorted({e.region for e in entries})
