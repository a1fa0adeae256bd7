"""Do the regions and zones a spec names exist? Checked before a spec is submitted.

``resources.region``/``zone`` (or ``infra: cloud/region/zone``, at the top or
in an ``any_of``/``ordered`` entry) naming a place the cloud does not have
would never be placed: the provider offers only what it knows. Each such
name is refused in one line naming its key path and line, the closest known
name (difflib) and a few of the allowed ones.

What "exists" means is the caller's: a :class:`Places` per cloud, built by
``providers.admission.places_for`` from the catalogs (aws, gcp, azure) and the
local provider's zones; a cloud without one (kubernetes: node labels are not
known offline; simulated; clouds skyctl does not run on) accepts any name.
Pure: the YAML text of the spec in, a SpecError out (docs/spec.md, "Regions
and zones").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from skyctl.errors import SpecError
from skyctl.spec import ServiceSpec
from skyctl.spec_checks import LineDict, did_you_mean, load_yaml, spec_error

__all__ = ["TRACE", "Places", "check_places"]

SHOWN = 8  # allowed names listed in an error
#: the ``places_for`` key of every zone of the spec's ``local.trace`` (before trace_zones)
TRACE = "local.trace"


@dataclass(frozen=True)
class Places:
    """The regions and zones of one cloud, as far as skyctl knows them offline."""

    cloud: str
    regions: tuple[str, ...]
    source: str  # where the names come from, said in errors
    zone_regions: Mapping[str, str] = field(default_factory=dict)  # listed zone -> region
    #: zones not listed: a regex whose ``region`` group must be a known region
    #: (aws ``us-east-1a``, gcp ``us-central1-a``)
    zone_pattern: str | None = None
    zone_example: str = "{region}a"  # how a zone of a region is written (for errors)
    any_region_zones: tuple[str, ...] = ()  # zones every region has (azure "1", "2", "3")

    def region_of(self, zone: str) -> str | None:
        """The zone's region; "" for a zone of every region; None for no known zone."""
        if zone in self.any_region_zones:
            return ""
        if zone in self.zone_regions:
            return self.zone_regions[zone]
        if self.zone_pattern is not None:
            m = re.fullmatch(self.zone_pattern, zone)
            if m is not None and m.group("region") in self.regions:
                return m.group("region")
        return None

    def zones(self, region: str | None = None) -> list[str]:
        """Known zone names (those of ``region``), for errors and suggestions."""
        listed = [z for z, r in self.zone_regions.items() if region in (None, r)]
        if self.zone_pattern is not None:
            for r in self.regions if region is None else (region,):
                listed += [self.zone_example.format(region=r, letter=c) for c in "abc"]
        return sorted(dict.fromkeys(listed + list(self.any_region_zones)))


@dataclass(frozen=True)
class _Named:
    """A region or zone as written: value, key path, line."""

    value: str
    key: str
    line: int | None


# cloud, region, zone of one resources entry (None: not given, or `*`)
_Entry = dict[str, "_Named | None"]


def check_places(spec: ServiceSpec, places_for: Callable[[str], Places | None]) -> None:
    """Raise a one-line SpecError for the first region or zone, in document order,
    that its cloud's :class:`Places` does not have. A candidate naming no cloud
    runs on ``local`` (as the providers place it)."""
    if spec.local is not None and spec.local.trace_zones:
        _check_trace_zones(spec, places_for(TRACE))
    for entry in _entries(spec):
        cloud = entry.get("cloud")
        places = places_for(cloud.value if cloud is not None else "local")
        if places is not None:
            _check_entry(entry, places, spec.source)


def _check_trace_zones(spec: ServiceSpec, trace: Places | None) -> None:
    """``local.trace_zones`` are zones of ``local.trace`` (:data:`TRACE`: all of them)."""
    data = load_yaml(spec.yaml_text, spec.source)
    names = data["local"]["trace_zones"]
    known = sorted(trace.zone_regions) if trace is not None else []
    for i, zone in enumerate(names):
        if trace is not None and zone not in trace.zone_regions:
            raise spec_error(
                f"unknown zone {zone!r}{did_you_mean(zone, known)} "
                f"(allowed: {_some(known)}; {trace.source})",
                key=f"local.trace_zones[{i}]",
                line=names.item_lines[i],
                source=spec.source,
            )


def _check_entry(entry: _Entry, places: Places, source: str | None) -> None:
    region, zone = entry.get("region"), entry.get("zone")
    name = places.cloud
    if region is not None and region.value not in places.regions:
        raise spec_error(
            f"unknown {name} region {region.value!r}"
            f"{did_you_mean(region.value, places.regions)} "
            f"(allowed: {_some(places.regions)}; {places.source})",
            key=region.key,
            line=region.line,
            source=source,
        )
    if zone is None:
        return
    zone_region = places.region_of(zone.value)
    if zone_region is None:
        if places.zone_pattern is not None:
            first = region.value if region is not None else (places.regions or ("REGION",))[0]
            example = places.zone_example.format(region=first, letter="a")
            allowed = f"a region and a letter, such as {example}, the region one of "
            allowed += _some(places.regions)
        else:
            allowed = _some(places.zones(region.value if region is not None else None))
        raise spec_error(
            f"unknown {name} zone {zone.value!r}{did_you_mean(zone.value, places.zones())} "
            f"(allowed: {allowed}; {places.source})",
            key=zone.key,
            line=zone.line,
            source=source,
        )
    if region is not None and zone_region and zone_region != region.value:
        raise spec_error(
            f"{name} zone {zone.value!r} is in region {zone_region!r}, not {region.value!r} "
            f"({_zones_of(places, region.value)})",
            key=zone.key,
            line=zone.line,
            source=source,
        )


def _zones_of(places: Places, region: str) -> str:
    if places.zone_pattern is not None:  # the letters vary by region: name none
        return f"zones of {region} are named " + places.zone_example.format(
            region=region, letter="<letter>"
        )
    return f"zones of {region}: {_some(places.zones(region))}"


def _some(names: tuple[str, ...] | list[str]) -> str:
    if not names:
        return "none"
    more = f", ... ({len(names)} in all)" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def _entries(spec: ServiceSpec) -> Iterator[_Entry]:
    """Each resources alternative's cloud/region/zone, any_of/ordered entries over
    the top-level keys (as ``skyctl.spec_resources`` merges them)."""
    try:
        data = load_yaml(spec.yaml_text, spec.source)
    except SpecError:
        return  # not a spec read from text (built in code): nothing to point at
    resources = data.get("resources") if isinstance(data, LineDict) else None
    if not isinstance(resources, LineDict):
        return
    base = _named(resources, "resources")
    which = "any_of" if resources.get("any_of") is not None else "ordered"
    alternatives = resources.get(which)
    if not isinstance(alternatives, list) or not alternatives:
        yield base
        return
    for i, item in enumerate(alternatives):
        if isinstance(item, LineDict):
            yield {**base, **_named(item, f"resources.{which}[{i}]")}


def _named(mapping: LineDict, path: str) -> _Entry:
    out: _Entry = {}
    for key in ("cloud", "region", "zone"):
        value = mapping.get(key)
        if key in mapping:
            out[key] = _value(value, f"{path}.{key}", mapping.value_lines.get(key), key)
    infra = mapping.get("infra")
    if isinstance(infra, str):  # as cloud/region/zone: all three, wildcards as not given
        key, line = f"{path}.infra", mapping.value_lines.get("infra")
        head, _, rest = infra.partition("/")
        if head.lower() in ("k8s", "kubernetes"):
            parts = ["kubernetes", rest]  # the context, which may hold `/`
        else:
            parts = infra.split("/")
        parts += [""] * (3 - len(parts))
        for name, part in zip(("cloud", "region", "zone"), parts[:3], strict=True):
            out[name] = _value(part, key, line, name)
    return out


def _value(value: object, key: str, line: int | None, what: str) -> _Named | None:
    if not isinstance(value, str) or value in ("", "*"):
        return None
    text = value  # as written: the providers compare names exactly
    if what == "cloud":  # case-insensitive, k8s is kubernetes (skyctl.spec_resources)
        text = "kubernetes" if text.lower() == "k8s" else text.lower()
    return _Named(text, key, line)
