"""YAML with line numbers, and the typed readers the spec parser is built from.

:func:`load_yaml` reads text with a safe PyYAML loader whose mappings and
sequences remember the line of every key and value (:class:`LineDict`,
:class:`LineList`). :class:`Section` wraps one mapping with its dotted key path
(``service.replica_policy``) and offers typed getters; every problem becomes a
one-line :class:`~skyctl.errors.SpecError` ``file:LINE: key.path: message``.

The ``resources:`` section (any_of/ordered, accelerator lists and maps,
``infra``) is parsed here too, into concrete :class:`ResourceCandidate` s;
``skyctl.spec_yaml`` handles everything else.
"""

from __future__ import annotations

import datetime
import difflib
import math
import re
from collections.abc import Iterable, Iterator
from typing import Any

import yaml

from skyctl.errors import SpecError
from skyctl.spec import ResourceCandidate, Resources

# Characters str.splitlines() treats as line breaks: never let one into an error.
_BREAKS = str.maketrans({c: " " for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})
MAX_NODES = 100_000  # plain values copied out of a spec (guards alias bombs)
MAX_DEPTH = 64


def one_line(text: str) -> str:
    return text.translate(_BREAKS)


def spec_error(message: str, *, key: str = "", line: int | None, source: str | None) -> SpecError:
    """A SpecError whose rendering is guaranteed to be a single line."""
    return SpecError(
        one_line(message),
        key=one_line(key),
        line=line,
        source=None if source is None else one_line(source),
    )


class LineDict(dict[Any, Any]):
    """A YAML mapping that knows where its keys and values are (1-based lines)."""

    line: int = 1
    key_lines: dict[Any, int]
    value_lines: dict[Any, int]


class LineList(list[Any]):
    """A YAML sequence that knows the line of each item."""

    line: int = 1
    item_lines: list[int]


class _DuplicateKey(yaml.MarkedYAMLError):
    pass


class _Loader(yaml.SafeLoader):
    """SafeLoader building LineDict/LineList and refusing duplicate keys."""


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _value_line(key_node: yaml.Node, value_node: yaml.Node) -> int:
    # a collection value starts on a later line; point at its key instead
    return _line(value_node) if isinstance(value_node, yaml.ScalarNode) else _line(key_node)


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> Iterator[LineDict]:
    data = LineDict()
    data.line = _line(node)
    data.key_lines = {}
    data.value_lines = {}
    yield data
    seen: dict[str, int] = {}
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            if key_node.value in seen:
                first = seen[key_node.value]
                problem = f"duplicate key {key_node.value!r} (first on line {first})"
                raise _DuplicateKey(problem=problem, problem_mark=key_node.start_mark)
            seen[key_node.value] = _line(key_node)
    data.update(loader.construct_mapping(node))  # also flattens `<<` merges
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node)
        data.key_lines[key] = _line(key_node)
        data.value_lines[key] = _value_line(key_node, value_node)


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> Iterator[LineList]:
    data = LineList()
    data.line = _line(node)
    data.item_lines = [_line(item) for item in node.value]
    yield data
    data.extend(loader.construct_sequence(node))


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def load_yaml(text: str, source: str | None) -> Any:
    """Parse one YAML document; any failure is a one-line SpecError with its line."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = int(mark.line) + 1 if mark is not None else None
        problem = " ".join(p for p in (e.context, e.problem) if p) or "unparsable"
        raise spec_error(f"invalid YAML: {problem}", line=line, source=source) from None
    except yaml.YAMLError as e:  # ReaderError: a character YAML does not allow
        position = getattr(e, "position", None)
        line = text[:position].count("\n") + 1 if isinstance(position, int) else None
        reason = getattr(e, "reason", None) or "unreadable text"
        raise spec_error(f"invalid YAML: {reason}", line=line, source=source) from None
    except RecursionError:
        raise spec_error("invalid YAML: nesting too deep", line=None, source=source) from None


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    return type(value).__name__


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float when it is a YAML number (not a boolean)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class Section:
    """One mapping of the spec, its key path and where it sits in the file."""

    def __init__(self, data: LineDict, path: str, source: str | None) -> None:
        self.data = data
        self.path = path
        self.source = source

    # -- locating ---------------------------------------------------------------
    def sub(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def key_line(self, key: Any) -> int:
        return self.data.key_lines.get(key, self.data.line)

    def value_line(self, key: Any) -> int:
        return self.data.value_lines.get(key, self.data.line)

    def error(self, key: str | None, message: str, *, at_key: bool = False) -> SpecError:
        """An error about ``key`` (its value's line, or the key's with ``at_key``)."""
        if key is None:
            return spec_error(message, key=self.path, line=self.data.line, source=self.source)
        line = self.key_line(key) if at_key else self.value_line(key)
        return spec_error(message, key=self.sub(key), line=line, source=self.source)

    # -- keys -------------------------------------------------------------------
    def check_keys(self, allowed: Iterable[str]) -> None:
        allowed = set(allowed)
        for key in self.data:
            if not isinstance(key, str):
                message = f"keys must be strings, got {type_name(key)} {key!r}"
                raise spec_error(
                    message, key=self.path, line=self.key_line(key), source=self.source
                )
            if key not in allowed:
                raise self.error(key, f"unknown key{did_you_mean(key, allowed)}", at_key=True)

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def require(self, key: str, why: str = "") -> Any:
        if key not in self.data:
            suffix = f" ({why})" if why else ""
            raise self.error(None, f"missing required key {key!r}{suffix}")
        return self.data[key]

    # -- typed getters (``None`` when absent) -----------------------------------
    def mapping(self, key: str, *, null_ok: bool = False) -> Section | None:
        if key not in self.data or (null_ok and self.data[key] is None):
            return None
        value = self.data[key]
        if not isinstance(value, LineDict):
            raise self.error(key, f"expected a mapping, got {type_name(value)}")
        return Section(value, self.sub(key), self.source)

    def string(self, key: str, *, nonempty: bool = False) -> str | None:
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {type_name(value)}")
        if nonempty and not value.strip():
            raise self.error(key, "must not be empty")
        return value

    def boolean(self, key: str) -> bool | None:
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {type_name(value)}")
        return value

    def integer(
        self, key: str, *, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        if key not in self.data:
            return None
        value = self.data[key]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {type_name(value)}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be <= {maximum}, got {value}")
        return value

    def number(
        self,
        key: str,
        *,
        minimum: float | None = None,
        positive: bool = False,
        maximum: float | None = None,
    ) -> float | None:
        if key not in self.data:
            return None
        value = self.data[key]
        number = finite_number(value)
        if number is None:
            if isinstance(value, int | float) and not isinstance(value, bool):
                raise self.error(key, f"expected a finite number, got {value!r}")
            raise self.error(key, f"expected a number, got {type_name(value)}")
        if positive and number <= 0:
            raise self.error(key, f"must be > 0, got {value}")
        if minimum is not None and number < minimum:
            raise self.error(key, f"must be >= {minimum:g}, got {value}")
        if maximum is not None and number > maximum:
            raise self.error(key, f"must be <= {maximum:g}, got {value}")
        return number

    def items(self, key: str) -> list[tuple[Any, str, int]] | None:
        """A list value as ``(item, key path, line)`` triples."""
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, LineList):
            raise self.error(key, f"expected a list, got {type_name(value)}")
        base = self.sub(key)
        return [(item, f"{base}[{i}]", value.item_lines[i]) for i, item in enumerate(value)]

    def at(self, path: str, line: int, message: str) -> SpecError:
        """An error about a list item (``path`` and ``line`` from :meth:`items`)."""
        return spec_error(message, key=path, line=line, source=self.source)

    def read(self, key: str, kind: str) -> Any:
        """A value of a declared kind (see ``_INT_MIN``); ``None`` when absent."""
        if kind.endswith("?"):  # null allowed, meaning "not set"
            if self.raw(key) is None:
                return None
            kind = kind[:-1]
        if kind == "text":
            return self.string(key, nonempty=True)
        if kind == "bool":
            return self.boolean(key)
        if kind == "port":
            return self.integer(key, minimum=1, maximum=65535)
        if kind.startswith("int"):
            return self.integer(key, minimum=_INT_MIN[kind])
        return self.number(key, **_NUM_RANGE[kind])

    def read_all(self, kinds: dict[str, str]) -> dict[str, Any]:
        """Every key of ``kinds`` present and not null, read as its kind."""
        values = {key: self.read(key, kind) for key, kind in kinds.items() if self.has(key)}
        return {key: value for key, value in values.items() if value is not None}

    def plain(self, key: str) -> Any:
        """The value as plain JSON-able data (for ``ServiceSpec.extra`` and post_data)."""
        budget = [MAX_NODES]
        try:
            return _plain(self.data[key], budget, 0)
        except ValueError as e:
            raise self.error(key, str(e)) from None


# Kinds for Section.read: "text" (non-empty string), "bool", "port", integers and
# numbers with their lower bounds; a trailing "?" also allows null.
_INT_MIN: dict[str, int | None] = {"int": None, "int>=0": 0, "int>=1": 1}
_NUM_RANGE: dict[str, dict[str, Any]] = {
    "num>0": {"positive": True},
    "num>=0": {"minimum": 0},
    "share": {"minimum": 0, "maximum": 1},
}


def _plain(value: Any, budget: list[int], depth: int) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError(f"too large (more than {MAX_NODES} values, check aliases)")
    if depth > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"unsupported number {value!r}")
        return value
    if isinstance(value, datetime.date):  # also datetime
        return value.isoformat()
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"keys must be strings, got {type_name(k)} {k!r}")
            out[k] = _plain(v, budget, depth + 1)
        return out
    if isinstance(value, list):
        return [_plain(v, budget, depth + 1) for v in value]
    raise ValueError(f"unsupported YAML value of type {type_name(value)}")


# -- resources: (SkyServe's schema; any_of/ordered and accelerator lists expand) --

#: Cloud names SkyServe accepts in ``resources.cloud``/``infra``, plus our ``local``.
CLOUDS: tuple[str, ...] = tuple(
    """local aws gcp azure kubernetes lambda ibm scp oci runpod vast vsphere cudo fluidstack
    paperspace do nebius hyperbolic seeweb shadeform primeintellect ssh slurm""".split()
)
_CANDIDATE_KEYS = set(
    """cloud region zone infra cpus memory accelerators instance_type use_spot image_id
    disk_size ports labels""".split()
)
# SkyServe resource keys we accept and keep in ``extra`` (with the types allowed).
_RESOURCE_EXTRA: dict[str, tuple[type, ...]] = {
    **dict.fromkeys(("disk_tier", "network_tier", "local_disk", "priority_class"), (str,)),
    **{"job_recovery": (str, dict), "volumes": (list,), "ephemeral_storage": (str, int)},
    **{"max_hourly_cost": (int, float), "accelerator_args": (dict,), "priority": (int,)},
    "autostop": (bool, int, str, dict),
}
_TYPE_WORDS = {dict: "a mapping", list: "a list", str: "a string", bool: "true or false"}
_TYPE_WORDS |= {int: "an integer", float: "a number"}
_ACCEL_RE = re.compile(r"[A-Za-z0-9][-A-Za-z0-9_.]*")
_CPUS_RE = re.compile(r"\d+(\.\d+)?\+?")
_MEMORY_RE = re.compile(r"\d+(\.\d+)?([KkMmGgTtPp][Bb]?|x)?\+?")
_DISK_RE = re.compile(r"(\d+)\s*([KkMmGgTtPp])?[Bb]?")
_DISK_GB = {"k": 1 / (1 << 20), "m": 1 / 1024, "g": 1, "t": 1024, "p": 1 << 20}
MAX_PORTS = 1024

# one parsed resources field: its value and where it came from (for errors)
_Field = tuple[Any, Section, str]


def keep_extra(sec: Section, types: dict[str, tuple[type, ...]], extra: dict[str, Any]) -> None:
    """Type-check accepted-but-unused SkyServe keys and keep them in ``extra``."""
    for key, allowed in types.items():
        if not sec.has(key):
            continue
        value = sec.raw(key)
        wrong_bool = isinstance(value, bool) and bool not in allowed
        if wrong_bool or not isinstance(value, allowed):
            names = " or ".join(_TYPE_WORDS[t] for t in allowed)
            raise sec.error(key, f"expected {names}, got {type_name(value)}")
        extra[sec.sub(key)] = sec.plain(key)


def parse_resources(sec: Section | None, extra: dict[str, Any]) -> Resources:
    """``resources:`` -> the concrete candidates (one per any_of/ordered entry and accelerator)."""
    if sec is None:
        return Resources()
    base = _fields(sec, extra, top=True)
    any_of, ordered = sec.items("any_of"), sec.items("ordered")
    if any_of is not None and ordered is not None:
        raise sec.error("ordered", "give `any_of` or `ordered`, not both", at_key=True)
    entries = any_of if any_of is not None else ordered
    accel = base.get("accelerators")
    groups: list[tuple[list[ResourceCandidate], _Field | None]] = []
    if entries is None:
        groups.append((_build(base), base.get("use_spot")))
        ordered_flag = accel is not None and accel[0][1] and len(accel[0][0]) > 1
    else:
        which = "any_of" if any_of is not None else "ordered"
        if not entries:
            raise sec.error(which, "must list at least one alternative")
        if accel is not None and len(accel[0][0]) > 1:
            raise sec.error(
                "accelerators", f"several accelerators cannot be combined with `{which}`"
            )
        for item, path, line in entries:
            if not isinstance(item, LineDict):
                raise spec_error(
                    f"expected a mapping, got {type_name(item)}",
                    key=path,
                    line=line,
                    source=sec.source,
                )
            entry = Section(item, path, sec.source)
            fields = _fields(entry, extra, top=False)
            if "accelerators" in fields and len(fields["accelerators"][0][0]) > 1:
                raise entry.error("accelerators", "one accelerator per alternative (e.g. A100:8)")
            merged = {**base, **fields}
            groups.append((_build(merged), merged.get("use_spot")))
        ordered_flag = ordered is not None
    spot = {c.use_spot for cands, _ in groups for c in cands}
    if len(spot) > 1:
        _, where = next(g for g in groups if g[0][0].use_spot != groups[0][0][0].use_spot)
        message = (
            "mixing spot and on-demand resources is not supported; use use_spot: true with "
            "base_ondemand_fallback_replicas or dynamic_ondemand_fallback"
        )
        if where is None:
            raise sec.error(None, message)
        raise where[1].error(where[2], message)
    candidates = tuple(c for cands, _ in groups for c in cands)
    return Resources(candidates=candidates, ordered=bool(ordered_flag), use_spot=spot == {True})


def _fields(sec: Section, extra: dict[str, Any], *, top: bool) -> dict[str, _Field]:
    sec.check_keys(
        _CANDIDATE_KEYS | _RESOURCE_EXTRA.keys() | ({"any_of", "ordered"} if top else set())
    )
    keep_extra(sec, _RESOURCE_EXTRA, extra)
    out: dict[str, _Field] = {}
    for key in _CANDIDATE_KEYS:
        if sec.has(key) and (sec.raw(key) is not None or key not in ("ports", "image_id")):
            out[key] = (_field(sec, key, extra), sec, key)
    if "infra" in out:
        both = [k for k in ("cloud", "region", "zone") if k in out]
        if both:
            raise sec.error(both[0], "give `infra` or cloud/region/zone, not both", at_key=True)
    return out


def _field(sec: Section, key: str, extra: dict[str, Any]) -> Any:
    value = sec.raw(key)
    if key == "cloud":
        return _cloud(sec, key, sec.string(key, nonempty=True) or "")
    if key in ("region", "zone", "instance_type"):
        return sec.string(key, nonempty=True)
    if key == "infra":
        return _infra(sec, sec.string(key, nonempty=True) or "")
    if key == "use_spot":
        return sec.boolean(key)
    if key in ("cpus", "memory"):
        if finite_number(value) is not None and not isinstance(value, bool):
            if value <= 0:
                raise sec.error(key, f"must be > 0, got {value}")
            value = f"{value:g}" if isinstance(value, float) else str(value)
        elif not isinstance(value, str):
            raise sec.error(
                key, f"expected a number or a string such as '4+', got {type_name(value)}"
            )
        pattern = _CPUS_RE if key == "cpus" else _MEMORY_RE
        if not pattern.fullmatch(value.strip()):
            example = "'4' or '4+'" if key == "cpus" else "'32', '32+' or '32GB+'"
            raise sec.error(key, f"invalid {key} {value!r}: expected e.g. {example}")
        return value.strip()
    if key == "accelerators":
        return _accelerators(sec, key)
    if key == "image_id":
        if isinstance(value, dict):  # SkyServe: a per-region map, kept as is
            extra[sec.sub(key)] = sec.plain(key)
            return None
        return sec.string(key, nonempty=True)
    if key == "disk_size":
        return _disk_size(sec, key)
    if key == "ports":
        return _ports(sec, key)
    return _labels(sec, key)


def _cloud(sec: Section, key: str, name: str) -> str:
    cloud = name.lower()
    cloud = "kubernetes" if cloud == "k8s" else cloud
    if cloud not in CLOUDS:
        raise sec.error(key, f"unknown cloud {name!r}{did_you_mean(cloud, CLOUDS)}")
    return cloud


def _infra(sec: Section, text: str) -> tuple[str | None, str | None, str | None]:
    """``cloud[/region[/zone]]`` with ``*`` wildcards, or ``k8s/<context>``."""
    head, _, rest = text.partition("/")
    if head.lower() in ("k8s", "kubernetes"):
        return "kubernetes", rest or None, None
    parts = text.split("/")
    if len(parts) > 3 or any(not p for p in parts):
        raise sec.error("infra", f"invalid infra {text!r}: expected cloud[/region[/zone]]")
    cloud = None if parts[0] == "*" else _cloud(sec, "infra", parts[0])
    region = parts[1] if len(parts) > 1 and parts[1] != "*" else None
    zone = parts[2] if len(parts) > 2 and parts[2] != "*" else None
    return cloud, region, zone


def _accelerators(sec: Section, key: str) -> tuple[list[dict[str, int]], bool]:
    """The accelerator alternatives, and whether their order is a preference."""
    value = sec.raw(key)
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in "[{" and text[-1:] in "]}" and text:
            names = [p.strip().strip("'\"") for p in text[1:-1].split(",") if p.strip()]
            return [_accelerator(sec, key, n, None) for n in names], text[0] == "["
        return [_accelerator(sec, key, text, None)], False
    if isinstance(value, list):
        items = sec.items(key) or []
        out = []
        for item, path, line in items:
            if not isinstance(item, str):
                raise spec_error(
                    f"expected a string, got {type_name(item)}",
                    key=path,
                    line=line,
                    source=sec.source,
                )
            out.append(_accelerator(sec, key, item, None))
        if not out:
            raise sec.error(key, "the accelerator list is empty")
        return out, True
    if isinstance(value, dict):
        if not value:
            raise sec.error(key, "the accelerator map is empty")
        return [_accelerator(sec, key, name, count) for name, count in value.items()], False
    raise sec.error(key, f"expected a string, list or mapping, got {type_name(value)}")


def _accelerator(sec: Section, key: str, name: Any, count: Any) -> dict[str, int]:
    if not isinstance(name, str):
        raise sec.error(key, f"accelerator names must be strings, got {type_name(name)}")
    if count is None and ":" in name:
        name, _, count_text = name.rpartition(":")
        try:
            count = float(count_text)
        except ValueError:
            raise sec.error(
                key, f"invalid accelerator count in {name + ':' + count_text!r}"
            ) from None
    number = 1.0 if count is None else finite_number(count)
    if number is None or number <= 0:
        raise sec.error(key, f"accelerator count must be a positive number, got {count!r}")
    if not number.is_integer():
        raise sec.error(key, f"fractional accelerator counts are not supported, got {count!r}")
    name = name.strip()
    if not _ACCEL_RE.fullmatch(name):
        raise sec.error(key, f"invalid accelerator name {name!r}: expected e.g. L4, A100:8")
    return {name: int(number)}


def _disk_size(sec: Section, key: str) -> int:
    value = sec.raw(key)
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise sec.error(key, f"must be > 0, got {value}")
        return value
    match = _DISK_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise sec.error(key, f"expected a size in GB such as 256 or '1TB', got {value!r}")
    size = int(match.group(1)) * _DISK_GB[(match.group(2) or "g").lower()]
    if size <= 0:
        raise sec.error(key, f"must be > 0, got {value!r}")
    return max(1, math.ceil(size))


def _ports(sec: Section, key: str) -> tuple[int, ...]:
    value = sec.raw(key)
    items = (
        sec.items(key) if isinstance(value, list) else [(value, sec.sub(key), sec.value_line(key))]
    )
    ports: list[int] = []
    for item, path, line in items or []:
        try:
            ports.extend(_port_range(item))
        except ValueError as e:
            raise spec_error(str(e), key=path, line=line, source=sec.source) from None
        if len(ports) > MAX_PORTS:
            raise spec_error(f"more than {MAX_PORTS} ports", key=path, line=line, source=sec.source)
    return tuple(dict.fromkeys(ports))


def _port_range(item: Any) -> range:
    if isinstance(item, int) and not isinstance(item, bool):
        low = high = item
    elif isinstance(item, str) and re.fullmatch(r"\s*\d{1,5}\s*(-\s*\d{1,5}\s*)?", item):
        low_text, _, high_text = item.partition("-")
        low, high = int(low_text), int(high_text or low_text)
    else:
        raise ValueError(f"expected a port (1-65535) or a range such as '8000-8010', got {item!r}")
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"invalid port or range {item!r}: ports are 1-65535, low <= high")
    if high - low >= MAX_PORTS:
        raise ValueError(f"port range {item!r} is wider than {MAX_PORTS}")
    return range(low, high + 1)


def _labels(sec: Section, key: str) -> dict[str, str]:
    labels = sec.mapping(key)
    assert labels is not None
    out: dict[str, str] = {}
    for name, value in labels.data.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise labels.error(str(name), "label names and values must be strings")
        out[name] = value
    return out


def _build(fields: dict[str, _Field]) -> list[ResourceCandidate]:
    def get(key: str, default: Any = None) -> Any:
        return fields[key][0] if key in fields else default

    if "infra" in fields:
        cloud, region, zone = get("infra")
    else:
        cloud, region, zone = get("cloud"), get("region"), get("zone")
    accels: list[dict[str, int] | None] = list(get("accelerators", ([None], False))[0])
    return [
        ResourceCandidate(
            cloud=cloud,
            region=region,
            zone=zone,
            accelerators=accel,
            cpus=get("cpus"),
            memory=get("memory"),
            instance_type=get("instance_type"),
            use_spot=bool(get("use_spot", False)),
            image_id=get("image_id"),
            disk_size=get("disk_size"),
            ports=get("ports", ()),
            labels=get("labels", {}),
        )
        for accel in accels
    ]


def all_ports(resources: Resources) -> tuple[int, ...]:
    return tuple(dict.fromkeys(p for c in resources.candidates for p in c.ports))
