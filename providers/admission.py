"""What the providers refuse of a spec offline, for ``serve validate``/``up``/``update``.

Two seams the CLI calls before it submits a spec, so that ``serve validate``
refuses what ``serve up`` (and the controller) would:

- :func:`places_for`: the regions and zones each cloud has
  (:class:`skyctl.spec_places.Places`): ``aws``, ``gcp``, ``azure`` the regions
  of ``skyctl/data/catalog/regions.txt`` (the cloud's public list) and of their
  catalog (``providers.catalog``, with the ``catalog:`` override of the cloud's
  config section: the way to add one), zones by the cloud's naming (``us-east-1a``,
  ``us-central1-a``; Azure's ``1``, ``2``, ``3`` and the configured ``zones``);
  ``local`` the zones its replay uses (``local.zones``, else the trace's, else
  the three default zones: ``providers.local_replay``), and ``local.trace`` every
  zone of the spec's trace (for ``local.trace_zones``). Kubernetes (node labels
  are not known offline), ``simulated`` and clouds skyctl does not run on: None
  (any name).
- :func:`check_provider_rules`: each provider's ``check_spec`` (what the
  controller refuses at ``serve up``, ``Controller._check_placeable``: when every
  candidate names that one cloud) as a function of the spec alone, so that
  ``serve validate`` refuses it too. No provider refuses a spec there today (the
  local provider's refusal of a fixed port for several replicas is gone: it runs
  them, ``providers.local_ports``); ``tests/test_spec_places.py`` fails when a
  provider gains a ``check_spec`` missing from :data:`SPEC_CHECKS`.

No I/O besides reading the catalogs and a named trace; no cloud SDK.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from providers.catalog import load_catalog, regions
from providers.local_replay import Replay
from skyctl.errors import ConfigError
from skyctl.spec import LocalOptions, ServiceSpec
from skyctl.spec_places import TRACE, Places

__all__ = ["SPEC_CHECKS", "check_provider_rules", "known_regions", "places_for"]

#: cloud -> the provider's ``check_spec`` as a function of the spec alone
SPEC_CHECKS: dict[str, Callable[[ServiceSpec], None]] = {}

_ZONE_FORMS = {  # how the cloud writes a zone of a region
    "aws": (r"(?P<region>.+\d)[a-z]", "{region}{letter}"),
    "gcp": (r"(?P<region>.+)-[a-z]", "{region}-{letter}"),
}
AZURE_ZONES = ("1", "2", "3")


def places_for(
    spec: ServiceSpec, config: Mapping[str, Mapping[str, Any]]
) -> Callable[[str], Places | None]:
    """cloud -> its :class:`Places` (None: any name), each built once when asked."""
    cache: dict[str, Places | None] = {}

    def get(cloud: str) -> Places | None:
        if cloud not in cache:
            cache[cloud] = _places(cloud, spec, config.get(cloud) or {})
        return cache[cloud]

    return get


def _places(cloud: str, spec: ServiceSpec, section: Mapping[str, Any]) -> Places | None:
    if cloud == "local":
        return _local_places(spec)
    if cloud == TRACE and spec.local is not None and spec.local.trace:
        whole = dataclasses.replace(spec.local, trace_zones=())  # every zone of the trace
        places = _local_places(dataclasses.replace(spec, local=whole))
        return dataclasses.replace(places, source=f"the zones of trace {spec.local.trace}")
    if cloud not in ("aws", "gcp", "azure"):
        return None
    catalog = regions(load_catalog(cloud, section.get("catalog")))
    # the catalog's first (where replicas can go), then the rest of the cloud's
    names = tuple(dict.fromkeys([*catalog, *sorted(known_regions().get(cloud, ()))]))
    source = (
        f"{cloud} regions from skyctl/data/catalog/regions.txt and the {cloud} catalog, "
        "the catalog's first; add catalog rows for another"
    )
    if cloud == "azure":
        configured = section.get("zones")
        extra = [str(z) for z in configured] if isinstance(configured, list) else []
        zones = tuple(dict.fromkeys([*AZURE_ZONES, *extra]))
        return Places(cloud, names, source, any_region_zones=zones)
    pattern, example = _ZONE_FORMS[cloud]
    return Places(cloud, names, source, zone_pattern=pattern, zone_example=example)


def _local_places(spec: ServiceSpec) -> Places:
    options = spec.local or LocalOptions()
    base_dir = str(Path(spec.source).parent) if spec.source else None
    try:
        replay = Replay(options, t0=0.0, base_dir=base_dir)
    except ValueError as exc:  # as the local provider reports it
        raise ConfigError(f"local: {exc}") from exc
    zones = {z.location.zone or "": z.location.region or "" for z in replay.zones}
    names = tuple(sorted(dict.fromkeys(zones.values())))
    if options.zones:
        whose = "the zones of local.zones"
    elif options.trace:
        whose = f"the zones of trace {options.trace}"
    else:
        whose = "the local provider's default zones (set local.zones or local.trace for others)"
    source = f"{whose}; a spec naming no cloud runs on local"
    return Places("local", names, source, zone_regions=zones)


@functools.cache
def known_regions() -> dict[str, tuple[str, ...]]:
    """cloud -> its regions, from ``skyctl/data/catalog/regions.txt`` (``cloud:`` then
    names, continued on indented lines; ``#`` comments)."""
    text = resources.files("skyctl").joinpath("data", "catalog", "regions.txt").read_text()
    out: dict[str, list[str]] = {}
    cloud = ""
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words and not line[:1].isspace() and words[0].endswith(":"):
            cloud, words = words[0][:-1], words[1:]
        if words:
            out.setdefault(cloud, []).extend(words)
    return {c: tuple(names) for c, names in out.items()}


def check_provider_rules(spec: ServiceSpec) -> None:
    """Raise the one-line SpecError the provider would raise at ``serve up`` for a
    spec whose every candidate names that provider's cloud."""
    clouds = {"kubernetes" if c == "k8s" else c for c in spec.clouds}
    if len(clouds) == 1:
        check = SPEC_CHECKS.get(next(iter(clouds)))
        if check is not None:
            check(spec)
