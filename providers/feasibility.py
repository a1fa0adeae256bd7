"""Can an enabled provider run this spec at all? Asked before a spec is submitted.

As SkyPilot's optimizer does, each ``resources`` candidate is checked against
what the provider of its cloud offers, and a spec no candidate of which fits is
refused with one line naming what was asked and what each provider offers:

- ``local`` (also a candidate naming no cloud): this machine's CPUs and memory
  (``cpus``/``memory`` are minimums here: a replica shares the machine), and
  the accelerators ``local.accelerators`` in ``config.yaml`` lists (none by
  default: a laptop is not assumed to hold an A100). ``instance_type`` means
  nothing here and is not checked. :func:`fits_machine` is also what the local
  provider's offerings use, so the controller never places there what cannot run.
- ``aws``, ``gcp``, ``azure``: an instance type of the catalog (bundled, with
  the ``catalog:`` override of the cloud's config section) that matches, as the
  provider's own offerings do (``providers.catalog.match``). Fractional
  accelerators match no catalog row.
- ``kubernetes``: the cluster's nodes are only known at launch; accepted.
- ``simulated``: endpoints that run nothing (``providers.simulated``); accepted.
- a cloud SkyPilot knows that skyctl has no provider for: refused, saying so.

No I/O besides reading the catalogs and this machine's size; no cloud SDK.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from providers.catalog import CatalogEntry, load_catalog, match, parse_quantity
from skyctl.errors import ConfigError, SpecError
from skyctl.spec import ResourceCandidate, ServiceSpec

__all__ = [
    "RUNS_ON",
    "Machine",
    "check_placement",
    "fits_machine",
    "local_accelerators",
    "this_machine",
]

#: the clouds skyctl has a provider for
RUNS_ON: tuple[str, ...] = ("local", "aws", "gcp", "azure", "kubernetes")
_CATALOG_CLOUDS = ("aws", "gcp", "azure")


@dataclass(frozen=True)
class Machine:
    """What the local provider can give one replica."""

    cpus: float
    memory_gb: float
    accelerators: Mapping[str, float]  # configured in config.yaml local.accelerators

    def describe(self) -> str:
        accels = ", ".join(f"{k}:{v:g}" for k, v in sorted(self.accelerators.items()))
        return f"local offers {self.cpus:g} CPUs, {self.memory_gb:.1f} GB memory, " + (
            f"accelerators {accels}" if accels else "no accelerators"
        )


def this_machine(accelerators: Mapping[str, float] | None = None) -> Machine:
    try:
        cpus = float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cpus = float(os.cpu_count() or 1)
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    except (ValueError, OSError, AttributeError):
        memory = 0.0
    return Machine(cpus, memory, dict(accelerators or {}))


def local_accelerators(section: Mapping[str, Any] | None) -> dict[str, float]:
    """``local.accelerators`` of config.yaml: ``{L4: 1}``, ``L4:1`` or ``[L4:1, T4]``."""
    value = (section or {}).get("accelerators")
    if value is None:
        return {}
    items: list[tuple[Any, Any]]
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, str | list):
        texts = [value] if isinstance(value, str) else value
        items = []
        for text in texts:
            name, _, count = str(text).partition(":")
            items.append((name, count or 1))
    else:
        raise ConfigError("local.accelerators: expected a mapping such as {L4: 1}")
    out: dict[str, float] = {}
    for name, count in items:
        try:
            number = float(count)
        except (TypeError, ValueError):
            number = -1.0
        if not isinstance(name, str) or not name or number <= 0:
            raise ConfigError(
                f"local.accelerators: expected NAME: COUNT (a positive number), got {name}: {count}"
            )
        out[name] = number
    return out


def _at_least(have: float, want: str | None, key: str) -> bool:
    if want is None:
        return True
    amount, _ = parse_quantity(want, key)
    return have + 1e-9 >= amount


def fits_machine(candidate: ResourceCandidate, machine: Machine) -> bool:
    """Can this machine run a replica of ``candidate`` (cpus, memory, accelerators)?"""
    if not _at_least(machine.cpus, candidate.cpus, "resources.cpus"):
        return False
    if candidate.memory is not None and not _at_least(
        machine.memory_gb, _gigabytes(candidate.memory), "resources.memory"
    ):
        return False
    have = {k.lower(): v for k, v in machine.accelerators.items()}
    return all(
        have.get(name.lower(), 0.0) + 1e-9 >= count
        for name, count in (candidate.accelerators or {}).items()
    )


def _gigabytes(text: str) -> str:
    """``"32GB+"`` -> ``"32+"``; ``"512MB"`` -> ``"0.5"`` (the catalog's quantity form)."""
    plus = text.endswith("+")
    body = text.rstrip("+").strip()
    scale = {"K": 1 / 1024**2, "M": 1 / 1024, "G": 1.0, "T": 1024.0, "P": 1024.0**2}
    unit = body.rstrip("bB")[-1:].upper()
    if unit in scale:
        body = f"{float(body.rstrip('bB')[:-1]) * scale[unit]:g}"
    elif body.endswith("x"):
        body = body[:-1]  # SkyPilot's "8x" (times the vCPUs): treated as a number here
    return body + ("+" if plus else "")


def _catalog_offer(cloud: str, entries: Sequence[CatalogEntry], region: str | None) -> str:
    """``aws offers A100:8, L4:1 ... and up to 192 CPUs, 768 GB (in its catalog)``."""
    here = [e for e in entries if region is None or e.region == region]
    if not here:
        return f"{cloud} has no region {region!r} in its catalog"
    accels = sorted({e.accelerators for e in here if e.accelerators})
    cpus, memory = max(e.vcpus for e in here), max(e.memory_gib for e in here)
    where = f" in {region}" if region else ""
    return (
        f"{cloud} offers{where} {', '.join(accels) or 'no accelerators'} "
        f"and up to {cpus:g} CPUs, {memory:g} GB (its catalog)"
    )


def _asked(candidates: Sequence[ResourceCandidate]) -> str:
    """``L4:8 or A100:8 with 32+ CPUs`` (the alternatives, then what they all ask)."""

    def one(values: Iterable[str | None]) -> str:
        return " or ".join(dict.fromkeys(v for v in values if v))

    accels = one(
        ",".join(f"{k}:{v:g}" for k, v in (c.accelerators or {}).items()) for c in candidates
    )
    parts = [accels] if accels else []
    cpus = one(c.cpus for c in candidates)
    memory = one(c.memory for c in candidates)
    types = one(c.instance_type for c in candidates)
    where = one("/".join(p for p in (c.cloud, c.region) if p) for c in candidates)
    extra = [f"{cpus} CPUs" if cpus else "", f"{memory} GB memory" if memory else "", types]
    extra = [e for e in extra if e]
    text = " ".join(parts) or "a replica"
    if extra:
        text += (" with " if parts else " of ") + ", ".join(extra)
    return text + (f" on {where}" if where else "")


def check_placement(
    spec: ServiceSpec,
    config: Mapping[str, Mapping[str, Any]],
    machine: Machine | None = None,
) -> None:
    """Raise a one-line SpecError when no candidate of ``spec`` fits any provider."""
    machine = machine or this_machine(local_accelerators(config.get("local")))
    reasons: dict[str, str] = {}
    foreign: set[str] = set()
    for cand in spec.resources.candidates:
        cloud = cand.cloud or "local"
        if cloud == "simulated":
            return  # runs anything: its endpoints run nothing (for measuring the controller)
        if cloud not in RUNS_ON:
            foreign.add(cloud)
            continue
        if cloud == "kubernetes":
            return  # the cluster decides at launch
        if cloud == "local":
            if fits_machine(cand, machine):
                return
            reasons["local"] = machine.describe()
            if cand.accelerators and not machine.accelerators:
                reasons["local"] += " (list them under local.accelerators in config.yaml)"
            continue
        section = config.get(cloud) or {}
        entries = load_catalog(cloud, section.get("catalog"))
        memory = None if cand.memory is None else _gigabytes(cand.memory)
        if match(dataclasses.replace(cand, memory=memory), entries):
            return
        reasons[cloud] = _catalog_offer(cloud, entries, cand.region)
    if foreign and not reasons:
        raise SpecError(
            f"skyctl does not run on {', '.join(sorted(foreign))}; "
            f"it runs on: {', '.join(RUNS_ON)}",
            key="resources",
            source=spec.source,
        )
    asked = _asked(spec.resources.candidates)
    offered = "; ".join(reasons.values())
    if foreign:
        offered += f"; skyctl does not run on {', '.join(sorted(foreign))}"
    if any(c.cloud is None for c in spec.resources.candidates):
        offered += "; a spec naming no cloud runs on local: set resources.infra to use a cloud"
    raise SpecError(
        f"no enabled provider can run this spec: asked for {asked}; {offered}",
        key="resources",
        source=spec.source,
    )
