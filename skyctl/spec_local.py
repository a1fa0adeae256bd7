"""The ``local:`` section of a spec (our key): options of the local provider.

Zones with prices, or a spot trace replayed in compressed time, or seeded
random preemptions (see ``docs/spec.md``). Part of the spec parser
(``skyctl.spec_yaml``); errors are one-line SpecErrors.
"""

from __future__ import annotations

from pathlib import Path

from skyctl.spec import LocalOptions, LocalZone
from skyctl.spec_checks import LineDict, Section, did_you_mean, type_name

__all__ = ["parse_local"]

_LOCAL = {
    "trace": "text",
    "trace_tick_seconds": "num>0",
    "trace_start": "int>=0",
    "preemption_rate_per_hour": "num>=0",
    "seed": "int",
    "notice_seconds": "num>=0",
    "ondemand_price": "num>0?",  # a trace's is > 0 too (skyctl.traces); policies divide by it
}
_ZONE = {"region": "text", "zone": "text", "spot_price": "num>=0", "ondemand_price": "num>0"}


def parse_local(sec: Section) -> LocalOptions:
    sec.check_keys(_LOCAL.keys() | {"zones", "trace_zones"})
    values = sec.read_all(_LOCAL)
    if "trace" in values:
        _check_trace(sec, values["trace"])
        if sec.has("zones"):
            raise sec.error(
                "zones", "give `zones` or `trace`, not both (see trace_zones)", at_key=True
            )
        if sec.has("preemption_rate_per_hour"):
            message = "random preemptions apply only without a trace"
            raise sec.error("preemption_rate_per_hour", message, at_key=True)
    else:
        for key in ("trace_tick_seconds", "trace_start", "trace_zones"):
            if sec.has(key):
                raise sec.error(key, "only used with `trace`", at_key=True)
    zones = _local_zones(sec, values.get("ondemand_price"))
    trace_zones = []
    for item, path, line in sec.items("trace_zones") or []:
        if not isinstance(item, str) or not item:
            raise sec.at(path, line, f"expected a zone name, got {type_name(item)}")
        if item in trace_zones:
            raise sec.at(path, line, f"zone {item} is listed twice")
        trace_zones.append(item)
    return LocalOptions(zones=zones, trace_zones=tuple(trace_zones), **values)


def _check_trace(sec: Section, trace: str) -> None:
    from skyctl.traces import bundled_traces  # only specs naming a trace need it

    bundled = bundled_traces()
    if trace in bundled:
        return
    path = Path(trace.partition("#")[0]).expanduser()
    if not path.is_absolute() and sec.source is not None:
        path = Path(sec.source).parent / path
    try:
        exists = path.exists()
    except (OSError, ValueError):  # e.g. a NUL byte in the name
        exists = False
    if not exists:
        hint = did_you_mean(trace, bundled)
        message = f"no bundled trace or file {trace!r} (bundled: {', '.join(bundled)}){hint}"
        raise sec.error("trace", message)


def _check_place_names(z: Section, region: str, zone: str) -> None:
    """A location is written ``cloud/region/zone`` (the store, the routing feed) and
    read back: a zone with a "/" (or a region starting or ending with one) came back
    as another place, and a control character breaks the lines it is printed on."""
    for key, text in (("region", region), ("zone", zone)):
        slash = "/" in text if key == "zone" else text[:1] == "/" or text[-1:] == "/"
        if slash or any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
            where = "at all" if key == "zone" else "at either end"
            raise z.error(key, f"{text!r}: no control characters, and no '/' {where}")


def _local_zones(sec: Section, ondemand: float | None) -> tuple[LocalZone, ...]:
    zones: dict[tuple[str, str], LocalZone] = {}
    for item, path, line in sec.items("zones") or []:
        if not isinstance(item, LineDict):
            raise sec.at(path, line, f"expected a mapping, got {type_name(item)}")
        z = Section(item, path, sec.source, line)
        z.check_keys(_ZONE.keys())
        for key in ("region", "zone", "spot_price"):
            z.require(key)
        if ondemand is None:
            z.require("ondemand_price", "or set local.ondemand_price")
        values = {"ondemand_price": ondemand, **z.read_all(_ZONE)}
        _check_place_names(z, values["region"], values["zone"])
        zone = LocalZone(**values)
        if (zone.region, zone.zone) in zones:
            raise z.error("zone", f"zone {zone.region}/{zone.zone} is listed twice")
        zones[zone.region, zone.zone] = zone
    return tuple(zones.values())
